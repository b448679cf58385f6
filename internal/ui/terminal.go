package ui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// Close codes the page tells apart: the terminal could not be opened (the
// reason says why), and the terminal ended.
const (
	CloseNoTerminal websocket.StatusCode = 4000
	CloseEnded      websocket.StatusCode = websocket.StatusNormalClosure
)

// resizeMsg is the client's only text frame.
type resizeMsg struct {
	Type string `json:"type"`
	Cols int    `json:"cols"`
	Rows int    `json:"rows"`
}

func termDim(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return def
	}
	return n
}

// terminal connects a WebSocket to a TTY in the run's sandbox: binary
// frames are the terminal's bytes both ways, text frames resize it.
func (s *Server) terminal(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	// The guard checked Origin against Host already; the library checks
	// it again.
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(1 << 20)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	q := r.URL.Query()
	tty, resize, err := s.opts.Backend.Terminal(ctx, id, termDim(q.Get("cols"), 80), termDim(q.Get("rows"), 24))
	if err != nil {
		c.Close(CloseNoTerminal, reason(err.Error()))
		return
	}
	defer tty.Close()

	ended := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := tty.Read(buf)
			if n > 0 {
				if werr := c.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
					ended <- nil
					return
				}
			}
			if err != nil {
				ended <- err
				return
			}
		}
	}()
	go func() {
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				cancel()
				return
			}
			switch typ {
			case websocket.MessageBinary:
				if _, err := tty.Write(data); err != nil {
					return
				}
			case websocket.MessageText:
				var m resizeMsg
				if json.Unmarshal(data, &m) == nil && m.Type == "resize" && m.Cols > 0 && m.Rows > 0 && m.Cols <= 1000 && m.Rows <= 1000 {
					resize(m.Cols, m.Rows)
				}
			}
		}
	}()
	select {
	case <-ctx.Done():
		c.Close(websocket.StatusGoingAway, "closed")
	case err := <-ended:
		msg := "the terminal ended"
		if err != nil && !errors.Is(err, io.EOF) {
			msg = err.Error()
		}
		c.Close(CloseEnded, reason(msg))
	}
}

// reason fits a close reason into the 123 bytes a close frame allows.
func reason(s string) string {
	if len(s) <= 120 {
		return s
	}
	s = s[:117]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
