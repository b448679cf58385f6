package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// ProjectRepoPrefix starts the repository name of every project image.
const ProjectRepoPrefix = "airlock-project-"

// ProjectRef returns the tag BuildProject gives the image built from
// dockerfileDir on baseRef, without building it:
// "airlock-project-<name>:<hash>", name being the project directory's and
// the hash covering baseRef and every file of the build context.
func ProjectRef(baseRef, dockerfileDir string) (string, error) {
	dir, err := filepath.Abs(dockerfileDir)
	if err != nil {
		return "", fmt.Errorf("project image: %w", err)
	}
	dockerfile := filepath.Join(dir, "Dockerfile")
	if _, err := os.Stat(dockerfile); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("project image: no %s; create it starting with \"ARG %s\" and \"FROM ${%s}\"", dockerfile, BaseArg, BaseArg)
		}
		return "", fmt.Errorf("project image: %w", err)
	}
	h := newHasher()
	h.field("base", []byte(baseRef))
	if err := hashDir(h, dir, notContext); err != nil {
		return "", fmt.Errorf("project image from %s: %w", dir, err)
	}
	return ProjectRepoPrefix + sanitizeName(filepath.Base(filepath.Dir(dir))) + ":" + h.sum(), nil
}

// BuildProject builds a project's own image from dockerfileDir (the
// project's .airlock directory, which is also the build context) on top of
// baseRef, and returns its ProjectRef; an existing tag returns at once. The
// Dockerfile receives baseRef as the build argument AIRLOCK_BASE:
//
//	ARG AIRLOCK_BASE
//	FROM ${AIRLOCK_BASE}
//
// Pass the content-addressed ref Build returned, not LatestRef, so a new
// default image makes a new project image.
func BuildProject(ctx context.Context, eng Engine, baseRef, dockerfileDir string, progress io.Writer) (string, error) {
	ref, err := ProjectRef(baseRef, dockerfileDir)
	if err != nil {
		return "", err
	}
	dir, _ := filepath.Abs(dockerfileDir) // ProjectRef succeeded with it
	dockerfile := filepath.Join(dir, "Dockerfile")

	ok, err := eng.ImageExists(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("build project image %s: %w", ref, err)
	}
	if ok {
		return ref, nil
	}
	if progress != nil {
		fmt.Fprintf(progress, "Building %s from %s on %s\n", ref, dockerfile, baseRef)
	}
	err = eng.BuildImage(ctx, sandbox.BuildRequest{
		ContextDir: dir,
		Skip:       notContext,
		Dockerfile: "Dockerfile",
		Tags:       []string{ref},
		BuildArgs:  map[string]string{BaseArg: baseRef},
		Progress:   progress,
	})
	if err != nil {
		// err names the tag already.
		return "", fmt.Errorf("project image from %s: %w", dockerfile, err)
	}
	return ref, nil
}

// notContext says which files of .airlock are airlock's own, not the
// project image's: editing a prompt or the config must not make the image
// stale (and the env file may hold secrets that must not reach an image).
func notContext(rel string) bool {
	switch {
	case rel == "prompts", rel == "config.toml", rel == "env", rel == ".gitignore",
		strings.HasSuffix(rel, ".local.toml") && !strings.Contains(rel, "/"):
		return true
	}
	return false
}

// hashDir adds every entry under dir that skip does not leave out (in
// WalkDir's lexical order) to h: its path, type and permission bits, and
// content or link target.
func hashDir(h *hasher, dir string, skip func(rel string) bool) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel != "." && skip(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h.field("entry", []byte(fmt.Sprintf("%s %v", filepath.ToSlash(rel), info.Mode())))
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			h.field("link", []byte(target))
		case info.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.field("data", data)
		}
		return nil
	})
}
