package egress

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"
)

func (s *Server) newAPIProxy() *httputil.ReverseProxy {
	up := s.api.Upstream
	headers := s.api.Headers
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			// Whatever the agent holds (the placeholder) is dropped; only
			// the real credential, which the sandbox never sees, goes out.
			pr.Out.Header.Del("X-Api-Key")
			pr.Out.Header.Del("Authorization")
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
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   dialTimeout,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if st, ok := r.Context().Value(stateKey{}).(*forwardState); ok {
				st.err = err
			}
			http.Error(w, "airlock model API endpoint: upstream error: "+err.Error(), http.StatusBadGateway)
		},
	}
}

// APIHandler serves the model-API endpoint: every request is forwarded to
// APIConfig.Upstream with the agent's credential replaced by the real one,
// and streamed back unbuffered. GET /healthz answers "ok" locally.
func (s *Server) APIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, "ok")
			return
		}
		if s.apiProxy == nil {
			http.Error(w, "airlock: no model API upstream is configured", http.StatusNotFound)
			return
		}
		start := time.Now()
		rec := Record{Kind: KindAPI, Method: r.Method, Host: s.api.Upstream.Hostname(), Path: r.URL.Path,
			Allowed: true, Rule: "model API endpoint"}
		if p := s.api.Upstream.Port(); p != "" {
			rec.Port, _ = parsePort(p)
		} else if s.api.Upstream.Scheme == "https" {
			rec.Port = 443
		} else {
			rec.Port = 80
		}
		note := ""
		if s.api.Placeholder != "" && foreignCredential(r.Header, s.api.Placeholder) {
			note = "; agent sent a credential other than the placeholder (dropped)"
		}
		st := &forwardState{}
		status := serveCounted(w, r, st, s.apiProxy, &rec, start)
		if st.err != nil {
			rec.Reason = "upstream error: " + st.err.Error() + note
		} else {
			rec.Reason = fmt.Sprintf("status %d%s", status, note)
		}
		s.log(rec)
	})
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
	return false
}
