package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// incusClient talks to incusd's documented REST API over its Unix socket
// (https://linuxcontainers.org/incus/docs/main/rest-api/). Incus' own Go
// client is not used: this small one is all airlock needs.
//
// Every response is a JSON envelope: "sync" with the result in metadata,
// "async" with a background operation (waited for with
// /1.0/operations/ID/wait), or "error" with a message saying what went wrong.
type incusClient struct {
	socket string // host path of the socket
	hc     *http.Client
}

// incusDefaultSocket is where incusd listens when nothing else is said.
const incusDefaultSocket = "/var/lib/incus/unix.socket"

// maxIncusResponse caps a JSON response read into memory: incusd is trusted,
// but a bug must not make airlock read without end.
const maxIncusResponse = 64 << 20

func newIncusClient(host string) (*incusClient, error) {
	socket := incusDefaultSocket
	if host != "" {
		p, ok := strings.CutPrefix(host, "unix://")
		if !ok && strings.Contains(host, "://") {
			return nil, fmt.Errorf("incus host %q: only a local Unix socket (unix:///path) is supported", host)
		}
		socket = p
	}
	if socket == "" || socket[0] != '/' {
		return nil, fmt.Errorf("incus host %q: want an absolute socket path", host)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	return &incusClient{socket: socket, hc: &http.Client{Transport: tr}}, nil
}

// incusResponse is the envelope of every answer.
type incusResponse struct {
	Type       string          `json:"type"` // sync, async, error
	Status     string          `json:"status"`
	StatusCode int             `json:"status_code"`
	Operation  string          `json:"operation"`
	ErrorCode  int             `json:"error_code"`
	Error      string          `json:"error"`
	Metadata   json.RawMessage `json:"metadata"`
}

// incusOperation is a background operation.
type incusOperation struct {
	ID         string         `json:"id"`
	Class      string         `json:"class"`
	Status     string         `json:"status"`
	StatusCode int            `json:"status_code"`
	Err        string         `json:"err"`
	Metadata   map[string]any `json:"metadata"`
	// Description and Resources say what the operation does, to what:
	// "Deleting instance", {"instances": ["/1.0/instances/NAME"]}.
	Description string              `json:"description"`
	Resources   map[string][]string `json:"resources"`
}

// IncusError is an error answer of incusd: the request, the HTTP status and
// Incus' own message. A 404 wraps ErrNotFound.
type IncusError struct {
	Method, Path string
	Code         int
	Message      string
}

func (e *IncusError) Error() string {
	return fmt.Sprintf("incus: %s %s: %s", e.Method, e.Path, e.Message)
}

// Unwrap makes errors.Is(err, ErrNotFound) true for a 404.
func (e *IncusError) Unwrap() error {
	if e.Code == http.StatusNotFound {
		return ErrNotFound
	}
	return nil
}

// incusConflict reports an answer saying that something already exists.
func incusConflict(err error) bool {
	var ie *IncusError
	return errors.As(err, &ie) && (ie.Code == http.StatusConflict || strings.Contains(ie.Message, "already exists") ||
		strings.Contains(ie.Message, "UNIQUE constraint failed: instances."))
}

// raw sends a request and returns the response when its status is 2xx;
// otherwise it decodes Incus' error. body may be nil; the caller closes
// the response's body.
func (c *incusClient) raw(ctx context.Context, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://incus"+path, body)
	if err != nil {
		return nil, fmt.Errorf("incus: %s %s: %w", method, path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("incus: %s %s: %w", method, path, ctx.Err())
		}
		return nil, c.unreachable(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeIncusError(method, path, resp)
}

// decodeIncusError reads an error envelope (or, failing that, the status).
func decodeIncusError(method, path string, resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var r incusResponse
	msg := resp.Status
	if json.Unmarshal(data, &r) == nil && r.Error != "" {
		msg = r.Error
	}
	return &IncusError{Method: method, Path: path, Code: resp.StatusCode, Message: msg}
}

// do sends in (JSON, or nothing when nil) and decodes the envelope.
func (c *incusClient) do(ctx context.Context, method, path string, in any) (*incusResponse, error) {
	var body io.Reader
	header := http.Header{}
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("incus: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
		header.Set("Content-Type", "application/json")
	}
	resp, err := c.raw(ctx, method, path, body, header)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readEnvelope(method, path, resp)
}

func readEnvelope(method, path string, resp *http.Response) (*incusResponse, error) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIncusResponse+1))
	if err != nil {
		return nil, fmt.Errorf("incus: %s %s: read the answer: %w", method, path, err)
	}
	if len(data) > maxIncusResponse {
		return nil, fmt.Errorf("incus: %s %s: the answer exceeds %d bytes", method, path, maxIncusResponse)
	}
	var r incusResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("incus: %s %s: the answer is not JSON: %w", method, path, err)
	}
	if r.Type == "error" {
		return nil, &IncusError{Method: method, Path: path, Code: r.ErrorCode, Message: r.Error}
	}
	return &r, nil
}

// get decodes a sync answer's metadata into out.
func (c *incusClient) get(ctx context.Context, path string, out any) error {
	return c.sync(ctx, http.MethodGet, path, nil, out)
}

// sync sends a request whose answer is synchronous and decodes its metadata
// into out (unless nil).
func (c *incusClient) sync(ctx context.Context, method, path string, in, out any) error {
	r, err := c.do(ctx, method, path, in)
	if err != nil {
		return err
	}
	if r.Type == "async" {
		// Some endpoints answer either way; wait then.
		_, err := c.wait(ctx, r.Operation, -1)
		return err
	}
	if out != nil && len(r.Metadata) > 0 {
		if err := json.Unmarshal(r.Metadata, out); err != nil {
			return fmt.Errorf("incus: %s %s: decode the answer: %w", method, path, err)
		}
	}
	return nil
}

// async sends a request that starts an operation, and returns it.
func (c *incusClient) async(ctx context.Context, method, path string, in any) (incusOperation, error) {
	r, err := c.do(ctx, method, path, in)
	if err != nil {
		return incusOperation{}, err
	}
	return asyncOperation(method, path, r)
}

func asyncOperation(method, path string, r *incusResponse) (incusOperation, error) {
	var op incusOperation
	if r.Type != "async" {
		return op, fmt.Errorf("incus: %s %s: want a background operation, got a %q answer", method, path, r.Type)
	}
	if err := json.Unmarshal(r.Metadata, &op); err != nil {
		return op, fmt.Errorf("incus: %s %s: decode the operation: %w", method, path, err)
	}
	if op.ID == "" {
		op.ID = strings.TrimPrefix(r.Operation, "/1.0/operations/")
	}
	return op, nil
}

// run is async followed by wait: it returns once the operation ended, with
// its error.
func (c *incusClient) run(ctx context.Context, method, path string, in any) (incusOperation, error) {
	op, err := c.async(ctx, method, path, in)
	if err != nil {
		return op, err
	}
	return c.wait(ctx, op.ID, -1)
}

// wait blocks until the operation ends (or timeout, when >= 0, passes) and
// returns it; a failed or cancelled operation is an error with its message.
func (c *incusClient) wait(ctx context.Context, id string, timeout time.Duration) (incusOperation, error) {
	id = strings.TrimPrefix(id, "/1.0/operations/")
	q := url.Values{}
	if timeout >= 0 {
		q.Set("timeout", strconv.Itoa(int(timeout.Seconds())))
	} else {
		q.Set("timeout", "-1")
	}
	path := "/1.0/operations/" + url.PathEscape(id) + "/wait?" + q.Encode()
	var op incusOperation
	if err := c.sync(ctx, http.MethodGet, path, nil, &op); err != nil {
		return op, err
	}
	switch op.Status {
	case "Success":
		return op, nil
	case "Failure", "Cancelled":
		msg := op.Err
		if msg == "" {
			msg = op.Status
		}
		return op, &IncusError{Method: http.MethodGet, Path: "/1.0/operations/" + id, Code: http.StatusInternalServerError, Message: msg}
	}
	if timeout >= 0 {
		return op, nil // still running: the caller asked for a bounded wait
	}
	return op, fmt.Errorf("incus: operation %s ended in status %q", id, op.Status)
}

// unreachable is the error for a socket nobody answers on.
func (c *incusClient) unreachable(err error) error {
	return fmt.Errorf("%w at unix://%s: is incusd running? start it with `systemctl start incus` or `incusd --group incus-admin &`, or set INCUS_SOCKET to its socket (this user must be in the group that may use it): %w",
		ErrEngineUnreachable, c.socket, err)
}

// close drops idle connections.
func (c *incusClient) close() { c.hc.CloseIdleConnections() }
