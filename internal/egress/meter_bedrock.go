package egress

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// bedrockUsage meters Claude on Amazon Bedrock ("bedrock"):
// InvokeModelWithResponseStream answers an AWS event stream whose chunk
// events each carry one Messages API streaming event, and InvokeModel a
// Messages API JSON response, so the usage is read as anthropicUsage reads
// it. The response is priced by the model id in the path: that is what
// Bedrock bills (a "global." inference profile costs less than a "us."
// one), while the events name the bare model.
var bedrockUsage = usageFormat{
	event:          anthropicUsage.event,
	data:           anthropicUsage.data,
	pathModelFirst: true,
}

// eventStreamType is the content type of an AWS event stream.
const eventStreamType = "application/vnd.amazon.eventstream"

const (
	// preludeLen is an event-stream frame's prelude: its total length,
	// its headers' length, and the CRC of those two.
	preludeLen = 12
	// minFrameLen is a frame with no headers and no payload: its prelude
	// and the CRC of the whole frame.
	minFrameLen = preludeLen + 4
	// maxEventFrame bounds the frame kept for decoding. The frames that
	// carry usage (message_start, message_delta) are small; a longer
	// frame (a large text or tool-input delta) is passed through without
	// being kept.
	maxEventFrame = 256 << 10
)

// eventStreamScanner finds the usage in an AWS event stream fed to it in
// arbitrary pieces. It keeps at most one frame, and only one no longer
// than maxEventFrame; it never changes what passes. An exception or error
// frame, or bytes that are not a frame, end the metering of the response
// (what was counted stays counted); a frame that fails its checksum or
// does not parse is skipped.
type eventStreamScanner struct {
	format  usageFormat
	rm      *responseMeter
	dec     *eventstream.Decoder
	prelude [preludeLen]byte
	have    int    // bytes of the prelude read so far
	need    int    // bytes of the current frame still to come after its prelude
	keep    bool   // the current frame is kept in frame
	frame   []byte // the current frame so far, prelude first
	payload []byte // reused for decoded payloads
	done    bool
}

func newEventStreamScanner(rm *responseMeter, format usageFormat) *eventStreamScanner {
	return &eventStreamScanner{rm: rm, format: format, dec: eventstream.NewDecoder()}
}

func (s *eventStreamScanner) feed(b []byte) {
	for len(b) > 0 && !s.done {
		if s.need == 0 {
			n := copy(s.prelude[s.have:], b)
			s.have += n
			b = b[n:]
			if s.have < preludeLen {
				return
			}
			s.have = 0
			s.startFrame()
			continue
		}
		n := min(s.need, len(b))
		if s.keep {
			s.frame = append(s.frame, b[:n]...)
		}
		s.need -= n
		b = b[n:]
		if s.need == 0 && s.keep {
			s.handle(s.frame)
			s.frame = s.frame[:0]
		}
	}
}

// startFrame reads a frame's prelude: a prelude whose checksum fails, or
// whose lengths cannot be a frame's, means the stream is not (or no
// longer) an event stream.
func (s *eventStreamScanner) startFrame() {
	p := s.prelude[:]
	total := binary.BigEndian.Uint32(p[0:4])
	headers := binary.BigEndian.Uint32(p[4:8])
	if crc32.ChecksumIEEE(p[:8]) != binary.BigEndian.Uint32(p[8:12]) ||
		total < minFrameLen || headers > total-minFrameLen {
		s.done = true
		return
	}
	s.need = int(total) - preludeLen
	s.keep = total <= maxEventFrame
	if s.keep {
		s.frame = append(s.frame[:0], p...)
	}
}

// handle reads one whole frame.
func (s *eventStreamScanner) handle(frame []byte) {
	msg, err := s.dec.Decode(bytes.NewReader(frame), s.payload[:0])
	if err != nil {
		return
	}
	s.payload = msg.Payload[:0]
	switch headerString(msg.Headers, ":message-type") {
	case "event":
	case "exception", "error":
		s.done = true
		return
	default:
		return
	}
	if headerString(msg.Headers, ":event-type") != "chunk" {
		return
	}
	// {"bytes": "<base64 of one Messages API streaming event>"}; Bedrock
	// may pad it with other fields.
	var chunk struct {
		Bytes []byte `json:"bytes"`
	}
	if json.Unmarshal(msg.Payload, &chunk) != nil || len(chunk.Bytes) == 0 {
		return
	}
	s.format.data(s.rm, chunk.Bytes)
}

// headerString is a frame's string header, or "".
func headerString(h eventstream.Headers, name string) string {
	v := h.Get(name)
	if v == nil {
		return ""
	}
	if sv, ok := v.(eventstream.StringValue); ok {
		return strings.TrimSpace(string(sv))
	}
	return ""
}
