package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// dist is the front-end `make web` builds from web/ (index.html, app.js,
// app.css). Only a placeholder is committed: a binary built without
// `make web` answers pages with a 503 saying so.
//
//go:embed all:dist
var dist embed.FS

func distFS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the directory is embedded: it exists
	}
	return sub
}

const notBuilt = "the web UI was not built: run make web\n"

// page serves the front-end's one page for each of its routes; the app
// picks its view from the path.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	b, err := fs.ReadFile(s.dist, "index.html")
	if err != nil {
		http.Error(w, notBuilt, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

// asset serves a built file from dist: never index.html's placeholder, a
// dot file or a directory listing.
func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "" || strings.HasPrefix(path.Base(name), ".") || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	if _, err := fs.Stat(s.dist, "index.html"); err != nil {
		http.Error(w, notBuilt, http.StatusServiceUnavailable)
		return
	}
	fi, err := fs.Stat(s.dist, name)
	if err != nil || fi.IsDir() {
		http.NotFound(w, r)
		return
	}
	http.ServeFileFS(w, r, s.dist, name)
}
