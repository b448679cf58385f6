package testkit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// BedrockService is the SigV4 signing name of both Bedrock hosts: the
// runtime (bedrock-runtime.R.amazonaws.com) and the control plane
// (bedrock.R.amazonaws.com).
const BedrockService = "bedrock"

// maxClockSkew is how far a request's X-Amz-Date may be from the server's
// clock, as AWS allows.
const maxClockSkew = 5 * time.Minute

// AWSCredentials is one AWS key pair, with the token of temporary
// (session) credentials.
type AWSCredentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Expires, when set, is when temporary credentials stop working:
	// requests signed with them after it get ExpiredTokenException, so a
	// test can check a client refreshes them.
	Expires time.Time
}

// StaticAWS returns a Credentials lookup knowing exactly creds.
func StaticAWS(creds ...AWSCredentials) func(accessKeyID string) (AWSCredentials, bool) {
	known := make(map[string]AWSCredentials, len(creds))
	for _, c := range creds {
		known[c.AccessKeyID] = c
	}
	return func(id string) (AWSCredentials, bool) {
		c, ok := known[id]
		return c, ok
	}
}

// BedrockOptions configures a BedrockServer.
type BedrockOptions struct {
	// Region is the only region requests may be signed for.
	Region string
	// Credentials finds the credentials of an access key id; requests
	// signed with any other key are refused.
	Credentials func(accessKeyID string) (AWSCredentials, bool)
	// BearerToken, when set, is a Bedrock API key accepted as
	// `Authorization: Bearer <key>` instead of a signature.
	BearerToken string
}

// Rejection is a request a verifying server refused, and why.
type Rejection struct {
	Method string
	Path   string
	Status int
	Code   string // what the client was told: x-amzn-ErrorType or the Google status
	Reason string // what exactly was wrong, for assertions
	At     time.Time
}

// Usage is what one model response reported, for tests of metering.
type Usage struct {
	Model        string // as the response names it
	Path         string // the request's path, which names the model on Bedrock and Vertex
	InputTokens  int
	OutputTokens int
}

// BedrockServer is a scripted Amazon Bedrock endpoint (runtime and the
// control plane call Claude Code makes) that verifies every request's SigV4
// signature. It answers GET /inference-profiles (ListInferenceProfiles),
// POST /model/ID/invoke (InvokeModel: an Anthropic message as JSON),
// /model/ID/invoke-with-response-stream (InvokeModelWithResponseStream: the
// Anthropic event stream, each event a chunk in an AWS event stream) and
// /model/ID/count-tokens, following a Script like Server. A recorded
// Request's Model is the id in the path; responses name the Anthropic model
// (us.anthropic.claude-sonnet-4-5-20250929-v1:0 → claude-sonnet-4-5-20250929)
// as Bedrock does. It is an http.Handler, so it can also be mounted in an
// httptest.Server.
type BedrockServer struct {
	serving // Start and Close

	script Script
	opts   BedrockOptions
	prefix string

	journal // Requests, Rejections, Sent
}

// NewBedrockServer returns a server following s that accepts requests
// signed for opts.Region with credentials opts.Credentials knows.
func NewBedrockServer(s Script, opts BedrockOptions) *BedrockServer {
	return &BedrockServer{script: s, opts: opts, prefix: newPrefix()}
}

// Start listens on addr and serves in the background until Close. It
// returns the base URL to put in ANTHROPIC_BEDROCK_BASE_URL.
func (s *BedrockServer) Start(addr string) (string, error) {
	return s.start(addr, "bedrock model server", s)
}

// awsError is a refusal in the shape AWS JSON protocols use.
type awsError struct {
	status int
	code   string // x-amzn-ErrorType
	msg    string // told to the client
	reason string // recorded
}

func (e *awsError) Error() string { return e.code + ": " + e.reason }

func writeAWSError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// ServeHTTP verifies the request, then answers it.
func (s *BedrockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest(w, r)
	if err != nil {
		writeAWSError(w, http.StatusRequestEntityTooLarge, "ValidationException", err.Error())
		return
	}
	if aerr := s.verify(r, req.Body, time.Now()); aerr != nil {
		s.journal.mu.Lock()
		s.rejections = append(s.rejections, Rejection{Method: r.Method, Path: r.URL.Path, Status: aerr.status, Code: aerr.code, Reason: aerr.reason, At: req.At})
		s.journal.mu.Unlock()
		writeAWSError(w, aerr.status, aerr.code, aerr.msg)
		return
	}

	if r.URL.Path == "/inference-profiles" {
		s.record(req)
		if r.Method != http.MethodGet {
			writeAWSError(w, http.StatusMethodNotAllowed, "UnknownOperationException", "use GET")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"inferenceProfileSummaries": []any{}})
		return
	}
	model, action := parseBedrockPath(r.URL.Path)
	req.Model = model
	req.Stream = action == "invoke-with-response-stream"
	parsed, parseErr := parseMessages(&req)
	seq := s.record(req)
	if model == "" || (action != "invoke" && action != "invoke-with-response-stream" && action != "count-tokens") {
		writeAWSError(w, http.StatusNotFound, "UnknownOperationException", "no scripted operation "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		writeAWSError(w, http.StatusMethodNotAllowed, "UnknownOperationException", "use POST")
		return
	}
	if action == "count-tokens" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"inputTokens": estimateTokens(len(req.Body))})
		return
	}
	if parseErr != nil {
		writeAWSError(w, http.StatusBadRequest, "ValidationException", "Malformed input request: "+parseErr.Error())
		return
	}
	if parsed.AnthropicVersion == "" {
		writeAWSError(w, http.StatusBadRequest, "ValidationException", "Malformed input request: required key [anthropic_version] not found")
		return
	}
	if s.script.Fail != nil && req.NumTools > 0 {
		f := *s.script.Fail
		if f.Status == 0 {
			f.Status = http.StatusInternalServerError
		}
		// Bedrock itself never says this, but the Anthropic SDKs honour it
		// on any host; without it Claude Code retries for minutes.
		if f.NoRetry {
			w.Header().Set("X-Should-Retry", "false")
		}
		writeAWSError(w, f.Status, bedrockErrorType(f.Status), f.Message)
		return
	}
	req.Model = bedrockModelName(model)
	m := scriptedReply(s.script, s.prefix, req, seq)
	s.journal.mu.Lock()
	s.sent = append(s.sent, Usage{Model: m.Model, Path: r.URL.Path, InputTokens: m.Usage.InputTokens, OutputTokens: m.Usage.OutputTokens})
	s.journal.mu.Unlock()
	w.Header().Set("X-Amzn-Requestid", fmt.Sprintf("%s-%04d", s.prefix, seq))
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-Bedrock-Input-Token-Count", fmt.Sprint(m.Usage.InputTokens))
		w.Header().Set("X-Amzn-Bedrock-Output-Token-Count", fmt.Sprint(m.Usage.OutputTokens))
		_ = json.NewEncoder(w).Encode(m)
		return
	}
	events, err := m.events()
	if err != nil {
		writeAWSError(w, http.StatusInternalServerError, "InternalServerException", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.Header().Set("X-Amzn-Bedrock-Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = writeBedrockStream(flushWriter{w}, events, m.Usage, time.Since(req.At))
}

// record keeps a verified request and returns its sequence number.
func (s *BedrockServer) record(req Request) int {
	s.journal.mu.Lock()
	defer s.journal.mu.Unlock()
	s.requests = append(s.requests, req)
	s.seq++
	return s.seq
}

// writeBedrockStream frames each Anthropic event as Bedrock does: an event
// stream message of type "chunk" whose JSON payload carries the event's
// JSON in base64, the last (message_stop) with the invocation metrics.
func writeBedrockStream(w io.Writer, events []sseEvent, u usage, latency time.Duration) error {
	enc := eventstream.NewEncoder()
	for _, e := range events {
		data := e.data
		if e.name == "message_stop" {
			data = map[string]any{
				"type": "message_stop",
				"amazon-bedrock-invocationMetrics": map[string]int{
					"inputTokenCount":           u.InputTokens,
					"outputTokenCount":          u.OutputTokens,
					"invocationLatency":         int(latency.Milliseconds()),
					"firstByteLatency":          int(latency.Milliseconds()),
					"cacheReadInputTokenCount":  u.CacheReadInputTokens,
					"cacheWriteInputTokenCount": u.CacheCreationInputTokens,
				},
			}
		}
		event, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("encode %s event: %w", e.name, err)
		}
		payload, _ := json.Marshal(map[string]string{"bytes": base64.StdEncoding.EncodeToString(event)})
		var h eventstream.Headers
		h.Set(":event-type", eventstream.StringValue("chunk"))
		h.Set(":content-type", eventstream.StringValue("application/json"))
		h.Set(":message-type", eventstream.StringValue("event"))
		var buf bytes.Buffer
		if err := enc.Encode(&buf, eventstream.Message{Headers: h, Payload: payload}); err != nil {
			return fmt.Errorf("frame %s event: %w", e.name, err)
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// parseBedrockPath splits /model/ID/ACTION. The id may be an inference
// profile ARN, whose '/' the client escapes; the action is the last segment.
func parseBedrockPath(p string) (model, action string) {
	rest, ok := strings.CutPrefix(p, "/model/")
	if !ok {
		return "", ""
	}
	i := strings.LastIndex(rest, "/")
	if i <= 0 {
		return "", ""
	}
	return rest[:i], rest[i+1:]
}

var bedrockModelID = regexp.MustCompile(`^(?:[a-z]+\.)?anthropic\.(claude-[a-z0-9.-]+?)(?:-v\d+(?::\d+)?)?$`)

// bedrockModelName is the Anthropic model name for a Bedrock model id or
// inference profile (us.anthropic.claude-sonnet-4-5-20250929-v1:0 →
// claude-sonnet-4-5-20250929), as the response's model field names it.
func bedrockModelName(id string) string {
	if i := strings.LastIndex(id, "/"); i >= 0 { // an ARN
		id = id[i+1:]
	}
	if m := bedrockModelID.FindStringSubmatch(id); m != nil {
		return m[1]
	}
	return DefaultModel
}

// bedrockErrorType is the exception Bedrock names for an HTTP status.
func bedrockErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "ValidationException"
	case http.StatusForbidden:
		return "AccessDeniedException"
	case http.StatusNotFound:
		return "ResourceNotFoundException"
	case http.StatusTooManyRequests:
		return "ThrottlingException"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailableException"
	default:
		return "InternalServerException"
	}
}

// sigV4Auth is a parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
type sigV4Auth struct {
	accessKeyID, date, region, service string
	signedHeaders                      []string
	signature                          string
}

func parseSigV4(h string) (sigV4Auth, bool) {
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return sigV4Auth{}, false
	}
	var a sigV4Auth
	var cred, signed string
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return sigV4Auth{}, false
		}
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			a.signature = v
		}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || signed == "" || a.signature == "" {
		return sigV4Auth{}, false
	}
	a.accessKeyID, a.date, a.region, a.service = scope[0], scope[1], scope[2], scope[3]
	a.signedHeaders = strings.Split(signed, ";")
	return a, true
}

// verify checks r's credentials the way AWS does and says why it refuses.
// The signature is recomputed with the AWS SDK's own signer over a copy of
// the request holding only the headers the client signed.
func (s *BedrockServer) verify(r *http.Request, body []byte, now time.Time) *awsError {
	deny := func(status int, code, msg, reason string) *awsError {
		return &awsError{status: status, code: code, msg: msg, reason: reason}
	}
	mismatch := func(reason string) *awsError {
		return deny(http.StatusForbidden, "InvalidSignatureException",
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.", reason)
	}
	authz := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(authz, "Bearer "); ok {
		if s.opts.BearerToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.BearerToken)) == 1 {
			return nil
		}
		return deny(http.StatusForbidden, "UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined prefix", "unknown bearer token")
	}
	if authz == "" {
		return deny(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token", "no Authorization header")
	}
	a, ok := parseSigV4(authz)
	if !ok {
		return deny(http.StatusForbidden, "IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.", "malformed Authorization header: "+authz)
	}
	if a.service != BedrockService {
		return deny(http.StatusForbidden, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.", "signed for service "+a.service)
	}
	if a.region != s.opts.Region {
		return deny(http.StatusForbidden, "InvalidSignatureException", "Credential should be scoped to a valid region.", "signed for region "+a.region+", want "+s.opts.Region)
	}
	var creds AWSCredentials
	if s.opts.Credentials != nil {
		creds, ok = s.opts.Credentials(a.accessKeyID)
	}
	if !ok {
		return deny(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.", "unknown access key id "+a.accessKeyID)
	}
	if !creds.Expires.IsZero() && !now.Before(creds.Expires) {
		return deny(http.StatusForbidden, "ExpiredTokenException", "The security token included in the request is expired", "credentials "+a.accessKeyID+" expired at "+creds.Expires.UTC().Format(time.RFC3339))
	}
	signed := make(map[string]bool, len(a.signedHeaders))
	for _, h := range a.signedHeaders {
		signed[h] = true
	}
	if !signed["host"] {
		return mismatch("host is not signed")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	at, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || !signed["x-amz-date"] {
		return deny(http.StatusForbidden, "IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.", "x-amz-date missing, unsigned or malformed: "+amzDate)
	}
	if d := now.Sub(at); d > maxClockSkew || d < -maxClockSkew {
		return deny(http.StatusForbidden, "InvalidSignatureException",
			fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 5 min.)", amzDate, now.UTC().Add(-maxClockSkew).Format("20060102T150405Z"), now.UTC().Format("20060102T150405Z")),
			"x-amz-date "+amzDate+" is more than 5 minutes from now")
	}
	if a.date != at.Format("20060102") {
		return mismatch("credential scope date " + a.date + " is not the day of x-amz-date " + amzDate)
	}
	token := r.Header.Get("X-Amz-Security-Token")
	switch {
	case creds.SessionToken == "" && token != "":
		return deny(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.", "session token sent for long-term credentials")
	case creds.SessionToken != "" && token == "":
		return deny(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.", "session token missing")
	case creds.SessionToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(creds.SessionToken)) != 1:
		return deny(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.", "wrong session token")
	case token != "" && !signed["x-amz-security-token"]:
		return mismatch("x-amz-security-token is not signed")
	}
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != bodyHash {
		return mismatch("x-amz-content-sha256 " + h + " is not the body's hash " + bodyHash)
	}

	cp := &http.Request{Method: r.Method, URL: &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}, Host: r.Host, Header: http.Header{}}
	for _, h := range a.signedHeaders {
		switch h {
		case "host":
		case "content-length":
			cp.ContentLength = r.ContentLength
		default:
			vals := r.Header.Values(h)
			if len(vals) == 0 {
				return mismatch("signed header " + h + " is missing")
			}
			for _, v := range vals {
				cp.Header.Add(h, v)
			}
		}
	}
	signer := v4.NewSigner()
	ac := aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}
	if err := signer.SignHTTP(context.Background(), ac, cp, bodyHash, a.service, a.region, at); err != nil {
		return mismatch("recomputing the signature: " + err.Error())
	}
	want, ok := parseSigV4(cp.Header.Get("Authorization"))
	if !ok {
		return mismatch("recomputed Authorization header is malformed")
	}
	if strings.Join(want.signedHeaders, ";") != strings.Join(a.signedHeaders, ";") {
		return mismatch("signed headers " + strings.Join(a.signedHeaders, ";") + " are not the canonical set " + strings.Join(want.signedHeaders, ";"))
	}
	if subtle.ConstantTimeCompare([]byte(want.signature), []byte(a.signature)) != 1 {
		return mismatch("signature does not match")
	}
	return nil
}

// anthropicBody is the part of a Bedrock or Vertex request body the
// servers read beyond the Messages request.
type anthropicBody struct {
	AnthropicVersion string `json:"anthropic_version"`
}

// parseMessages fills req's conversation counts from its Messages body.
func parseMessages(req *Request) (anthropicBody, error) {
	var parsed messagesRequest
	if err := json.Unmarshal(req.Body, &parsed); err != nil {
		return anthropicBody{}, err
	}
	var extra anthropicBody
	_ = json.Unmarshal(req.Body, &extra)
	if parsed.Model != "" {
		req.Model = parsed.Model
	}
	req.Stream = req.Stream || parsed.Stream
	req.NumTools = len(parsed.Tools)
	req.NumToolResults = parsed.countToolResults()
	return extra, nil
}
