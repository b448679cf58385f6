package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// serving is what every scripted server shares: serving its handler on an
// address in the background until Close.
type serving struct {
	mu  sync.Mutex
	srv *http.Server
}

// start listens on addr (e.g. "127.0.0.1:0", "0.0.0.0:0", "172.17.0.1:0")
// and serves h in the background until Close. It returns the server's
// base URL; for an unspecified address the URL names loopback and the
// caller substitutes the address its client can reach. what names the
// server in errors.
func (s *serving) start(addr, what string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s listen on %s: %w", what, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	if s.srv != nil {
		s.mu.Unlock()
		ln.Close()
		return "", errors.New(what + " already started")
	}
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }() // returns ErrServerClosed on Close

	tcp := ln.Addr().(*net.TCPAddr)
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(tcp.Port)), nil
}

// Close stops a started server, cutting open connections.
func (s *serving) Close() error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

// newPrefix makes ids unique across servers.
func newPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// readRequest reads a request whole (at most maxRequestBody) into what a
// server records of it.
func readRequest(w http.ResponseWriter, r *http.Request) (Request, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		return Request{}, err
	}
	return Request{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Headers: r.Header.Clone(),
		Body:    body,
		At:      time.Now(),
	}, nil
}

// journal is what a verifying server (Bedrock, Vertex) saw: the requests
// it accepted, those it refused and why, and the usage it answered.
type journal struct {
	mu         sync.Mutex
	requests   []Request
	rejections []Rejection
	sent       []Usage
	seq        int
}

// Requests returns a copy of every request that passed the server's
// checks, oldest first.
func (j *journal) Requests() []Request {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Request(nil), j.requests...)
}

// Rejections returns every refused request, oldest first.
func (j *journal) Rejections() []Rejection {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Rejection(nil), j.rejections...)
}

// Sent returns the usage of every model response sent, oldest first.
func (j *journal) Sent() []Usage {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Usage(nil), j.sent...)
}
