package egress

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

func (s *Server) newAPIProxy() *httputil.ReverseProxy {
	up := s.api.Upstream
	headers := s.api.Headers
	strip := s.api.Strip
	if strip == nil {
		strip = []string{"X-Api-Key", "Authorization"}
	}
	var transport http.RoundTripper = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   dialTimeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// A kept HTTP/2 connection that died unseen on the way stalls
		// the next request for minutes: pings find it.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
	if s.cloud != nil {
		transport = authTransport{base: transport, auth: s.cloud}
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := up
			if st, ok := pr.In.Context().Value(stateKey{}).(*forwardState); ok && st.up != nil {
				target = st.up
			}
			pr.SetURL(target)
			dropQueryCredentials(pr.Out.URL)
			// Whatever the agent holds (the placeholder) is dropped; only
			// the real credential, which the sandbox never sees, goes out.
			for _, h := range strip {
				pr.Out.Header.Del(h)
			}
			// The meter must read what comes back: the agent does not
			// choose a compression. Without the header the transport asks
			// for gzip itself and undoes it before the meter.
			pr.Out.Header.Del("Accept-Encoding")
			for k := range pr.Out.Header {
				if strings.HasPrefix(k, "Proxy-") {
					pr.Out.Header.Del(k)
				}
			}
			for k, v := range headers {
				pr.Out.Header.Set(k, v)
			}
		},
		// Flush every write: the Messages API streams Server-Sent Events.
		FlushInterval: -1,
		// Model responses are metered as they stream past, unbuffered.
		ModifyResponse: func(resp *http.Response) error {
			_ = recordCuts(resp)
			st, ok := resp.Request.Context().Value(stateKey{}).(*forwardState)
			if ok && st.metered && resp.StatusCode >= 200 && resp.StatusCode < 300 && resp.Body != nil {
				resp.Body = s.meter.meterBody(resp.Body, resp.Header.Get("Content-Type"), s.usage, st.model)
			}
			return nil
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if st, ok := r.Context().Value(stateKey{}).(*forwardState); ok {
				st.err = err
			}
			http.Error(w, "airlock model API endpoint: upstream error: "+err.Error(), http.StatusBadGateway)
		},
	}
}

// APIHandler serves the model-API endpoint: only the configured routes
// (for Claude Code POST /v1/messages and POST /v1/messages/count_tokens,
// any query) are forwarded to APIConfig.Upstream, with the agent's
// credential replaced by the real one, and streamed back unbuffered while
// their usage is metered. Everything else, and every model request once a
// budget is spent, is refused with a 403 and an audit record. GET /healthz
// answers "ok" locally.
func (s *Server) APIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI == "/healthz" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, "ok")
			return
		}
		if s.apiProxy == nil {
			http.Error(w, "airlock: no model API upstream is configured", http.StatusNotFound)
			return
		}
		start := time.Now()
		route, rawPath, refusal := matchRoute(r.Method, r.RequestURI, s.routes)
		up := s.api.Upstream
		if route.Upstream != "" {
			// checkRoutes parsed it already.
			up, _ = parseUpstream(route.Upstream)
		}
		rec := Record{Kind: KindAPI, Method: headerSafe(r.Method), Host: up.Hostname(), Rule: "model API endpoint"}
		if p := up.Port(); p != "" {
			rec.Port, _ = parsePort(p)
		} else if up.Scheme == "https" {
			rec.Port = 443
		} else {
			rec.Port = 80
		}
		rec.Path = headerSafe(rawPath)
		if len(rec.Path) > 512 {
			rec.Path = rec.Path[:512] + "..."
		}
		if refusal != "" {
			s.refuseAPI(w, rec, start, http.StatusForbidden, "permission_error", refusal,
				"this endpoint forwards only "+routeList(s.routes)+" to the model API")
			return
		}
		if route.Metered && s.usage.request != nil {
			if err := rewriteRequestBody(r, s.usage.request); err != nil {
				s.refuseAPI(w, rec, start, http.StatusBadRequest, "invalid_request_error", err.Error(),
					"the egress proxy forwards only model requests whose usage it can meter")
				return
			}
		}
		if s.meter.deadlinePassed() {
			s.expire()
		}
		if spent := s.meter.admit(route); spent != "" {
			// 429, not 403: Claude Code words a 403 as an authentication
			// failure; with x-should-retry false it does not retry a 429.
			s.refuseAPI(w, rec, start, http.StatusTooManyRequests, "rate_limit_error", "the run's budget is spent: "+spent,
				"the egress proxy refuses further model requests")
			return
		}
		// Forward exactly the path that was matched.
		r.URL.Path, r.URL.RawPath = rawPath, ""
		rec.Allowed = true
		rec.Rule = "model API endpoint (" + route.String() + ")"
		note := ""
		if s.api.Placeholder != "" && foreignCredential(r.Header, s.api.Placeholder) {
			note = "; agent sent a credential other than the placeholder (dropped)"
		}
		if queryCredential(r.RequestURI) {
			note += "; agent sent a credential in the query (dropped)"
		}
		st := &forwardState{metered: route.Metered, model: pathModel(route, rawPath), up: up}
		status, aborted := s.serveCounted(w, r, st, s.apiProxy, &rec, start)
		s.outcome(&rec, st, status, aborted)
		rec.Reason += note
		s.log(rec)
		if aborted {
			panic(http.ErrAbortHandler)
		}
	})
}

// refuseAPI answers a model-API request with an error in the API's own
// shape, so the agent's CLI shows the message, and logs the refusal.
func (s *Server) refuseAPI(w http.ResponseWriter, rec Record, start time.Time, status int, errType, reason, hint string) {
	msg := "airlock egress proxy: denied: " + reason + "; " + hint + "."
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Airlock-Denied", headerSafe(reason))
	// Anthropic's SDKs honour this: a refusal is not worth retrying.
	w.Header().Set("X-Should-Retry", "false")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":  "error",
		"error": map[string]string{"type": errType, "message": headerSafe(msg)},
	})
	rec.Allowed = false
	rec.Reason = reason
	rec.DurationMS = time.Since(start).Milliseconds()
	s.log(rec)
}

// foreignCredential reports whether the request carries a credential that
// is not the placeholder.
func foreignCredential(h http.Header, placeholder string) bool {
	if k := h.Get("X-Api-Key"); k != "" && k != placeholder {
		return true
	}
	if a := h.Get("Authorization"); a != "" && a != "Bearer "+placeholder && a != placeholder {
		return true
	}
	if k := h.Get("X-Goog-Api-Key"); k != "" && k != placeholder {
		return true
	}
	return false
}

// queryCredential reports whether a request target carries a credential
// in its query (see dropQueryCredentials).
func queryCredential(requestURI string) bool {
	_, raw, ok := strings.Cut(requestURI, "?")
	if !ok {
		return false
	}
	u := url.URL{RawQuery: raw}
	return dropQueryCredentials(&u)
}
