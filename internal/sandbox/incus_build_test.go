package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
)

// TestIncusBuild builds images with the Incus builder on a busybox base and
// checks what a user of the image would see: the files, the output of the
// RUN steps, the owners COPY --chown and USER give, the runtime
// configuration recorded as properties, and that a failing or refused
// build leaves nothing behind.
func TestIncusBuild(t *testing.T) {
	inc := incusEngine(t)
	base := sandboxtest.Image
	ctx := context.Background()

	// A server on the bridge's host address: what apt and npm are to a real
	// build, reached the same way (the build instance's own NIC).
	gw := bridgeGateway(t)
	ln, err := net.Listen("tcp", gw+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fetched over the bridge\n") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	t.Run("in-memory context", func(t *testing.T) {
		ref := "airlock-test-incusbuild:files"
		t.Cleanup(func() { deleteIncusImage(ref, ref+"-alias") })
		var progress bytes.Buffer
		err := inc.BuildImage(ctx, sandbox.BuildRequest{
			Files: map[string][]byte{
				"build/Containerfile": []byte("ARG BASE\nFROM ${BASE}\nARG GREETING\nENV WHO=builder\n" +
					// A user made by a RUN is known to the steps after it.
					"RUN echo agent:x:1000:1000::/home/agent:/bin/sh >>/etc/passwd; echo agent:x:1000: >>/etc/group\n" +
					"COPY greeting /greeting\n" +
					"COPY --chown=agent sub/ /home/agent/sub/\n" +
					"RUN echo \"$GREETING from $WHO\" >>/greeting && echo step output\n" +
					"RUN busybox wget -q -O /fetched http://" + ln.Addr().String() + "/\n" +
					"USER agent\nWORKDIR /home/agent/work\n" +
					"RUN id -u >uid; id -g >>uid; pwd >>uid\n" +
					"LABEL org.example.kind=test\n" +
					`ENTRYPOINT ["/bin/sh", "-c"]` + "\nCMD [\"cat /greeting\"]\n"),
				"greeting":    []byte("hello\n"),
				"sub/a/b.txt": []byte("deep\n"),
			},
			Dockerfile: "build/Containerfile",
			Tags:       []string{ref, ref + "-alias"},
			BuildArgs:  map[string]string{"GREETING": "from a build arg", "BASE": base},
			Progress:   &progress,
		})
		if err != nil {
			t.Fatalf("BuildImage: %v\n%s", err, progress.String())
		}
		if out := incusRun(t, ref, "cat", "/greeting"); out != "hello\nfrom a build arg from builder\n" {
			t.Errorf("/greeting = %q", out)
		}
		if out := incusRun(t, ref, "sh", "-c", "cat /fetched; if test -e /etc/resolv.conf; then echo the resolv.conf of the build stayed; fi"); out != "fetched over the bridge\n" {
			t.Errorf("fetched over the build's network, and what is left of it: %q", out)
		}
		if out := incusRun(t, ref, "cat", "/home/agent/work/uid"); out != "1000\n1000\n/home/agent/work\n" {
			t.Errorf("RUN as USER agent in WORKDIR wrote %q", out)
		}
		if out := incusRun(t, ref, "stat", "-c", "%u:%g %a", "/home/agent/sub/a/b.txt", "/greeting"); out != "1000:1000 644\n0:0 644\n" {
			t.Errorf("owners = %q, want COPY --chown=agent's and root's", out)
		}
		if p := progress.String(); !strings.Contains(p, "Step 8/15 : RUN echo") || !strings.Contains(p, "step output\n") {
			t.Errorf("progress lacks the steps or their output:\n%s", p)
		}
		props := incusImageProps(t, ref+"-alias")
		want := map[string]string{
			"airlock.env":        `["WHO=builder"]`,
			"airlock.user":       "agent",
			"airlock.workdir":    "/home/agent/work",
			"airlock.entrypoint": `["/bin/sh","-c"]`,
			"airlock.cmd":        `["cat /greeting"]`,
			"airlock.labels":     `{"org.example.kind":"test"}`,
		}
		for k, v := range want {
			if props[k] != v {
				t.Errorf("property %s = %q, want %q", k, props[k], v)
			}
		}
	})

	t.Run("directory context", func(t *testing.T) {
		ref := "airlock-test-incusbuild:dir"
		t.Cleanup(func() { deleteIncusImage(ref) })
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nCOPY sub/ /data/\nCOPY s* /more/\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "sub", "file"), []byte("content"), 0o600)
		os.WriteFile(filepath.Join(dir, "sub", "skipped"), []byte("secret"), 0o600)
		os.Symlink("file", filepath.Join(dir, "sub", "link"))
		err := inc.BuildImage(ctx, sandbox.BuildRequest{ContextDir: dir, Tags: []string{ref},
			Skip: func(rel string) bool { return rel == "sub/skipped" }})
		if err != nil {
			t.Fatalf("BuildImage: %v", err)
		}
		if out := incusRun(t, ref, "cat", "/data/file", "/data/link", "/more/file"); out != "contentcontentcontent" {
			t.Errorf("copied files = %q", out)
		}
		if out := incusRun(t, ref, "sh", "-c", "stat -c %a /data/file; test -L /data/link && echo link; ls /data"); out != "600\nlink\nfile\nlink\n" {
			t.Errorf("modes, links, skipped files = %q", out)
		}
	})

	t.Run("failing step", func(t *testing.T) {
		ref := "airlock-test-incusbuild:fail"
		before := buildInstances(t)
		err := inc.BuildImage(ctx, sandbox.BuildRequest{
			Files: map[string][]byte{"Dockerfile": []byte("FROM " + base + "\nRUN echo fetching parts; echo part 42 is missing >&2; exit 7\nRUN true\n")},
			Tags:  []string{ref},
		})
		var be *sandbox.BuildError
		if !errors.As(err, &be) {
			t.Fatalf("err = %v, want a *sandbox.BuildError", err)
		}
		if !strings.HasPrefix(be.Step, "Step 2/3 : RUN echo fetching parts") {
			t.Errorf("Step = %q, want the second step", be.Step)
		}
		for _, want := range []string{"Step 2/3", "non-zero code: 7", "part 42 is missing", "fetching parts"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if ok, _ := inc.ImageExists(ctx, ref); ok {
			t.Errorf("failed build left image %s", ref)
		}
		if after := buildInstances(t); after != before {
			t.Errorf("failed build left instances: %q (before: %q)", after, before)
		}
	})

	t.Run("refused before anything is made", func(t *testing.T) {
		before := buildInstances(t)
		for _, tt := range []struct{ dockerfile, want string }{
			{"FROM " + base + "\nRUN true\nEXPOSE 80\n", "Dockerfile line 3: EXPOSE is not supported on Incus"},
			{"FROM airlock-test-no-such-image:1\n", "FROM airlock-test-no-such-image:1: no image airlock-test-no-such-image:1 on Incus"},
			{"FROM " + base + "\nCOPY missing /x\n", "COPY missing /x: missing: no such file or directory in the build context"},
		} {
			err := inc.BuildImage(ctx, sandbox.BuildRequest{Files: map[string][]byte{"Dockerfile": []byte(tt.dockerfile)}, Tags: []string{"airlock-test-incusbuild:refused"}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		}
		if after := buildInstances(t); after != before {
			t.Errorf("refused builds made instances: %q (before: %q)", after, before)
		}
	})

	t.Run("no context", func(t *testing.T) {
		if err := inc.BuildImage(ctx, sandbox.BuildRequest{Tags: []string{"x:y"}}); err == nil || !strings.Contains(err.Error(), "no build context") {
			t.Errorf("err = %v, want a missing-context error", err)
		}
	})
}

// incusRun runs argv in a throwaway instance of ref, as root, and returns
// its output.
func incusRun(t *testing.T, ref string, argv ...string) string {
	t.Helper()
	name := "airlock-test-run-" + strings.NewReplacer(":", "-", ".", "-").Replace(filepath.Base(t.Name()))
	name = strings.ToLower(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, name))
	if len(name) > 60 {
		name = name[:60]
	}
	defer exec.Command("incus", "delete", "-f", name).Run()
	if out, err := exec.Command("incus", "launch", "local:"+ref, name, "-s", "airlock", "-c", "raw.lxc=lxc.init.cmd = /bin/sleep 1000").CombinedOutput(); err != nil {
		t.Fatalf("incus launch %s: %v\n%s", ref, err, out)
	}
	out, err := exec.Command("incus", append([]string{"exec", name, "--"}, argv...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("incus exec %s %v: %v\n%s", ref, argv, err, out)
	}
	return string(out)
}

func incusImageProps(t *testing.T, alias string) map[string]string {
	t.Helper()
	out, err := exec.Command("incus", "query", "/1.0/images/aliases/"+alias).Output()
	if err != nil {
		t.Fatalf("incus query alias %s: %v", alias, err)
	}
	var a struct{ Target string }
	json.Unmarshal(out, &a)
	out, err = exec.Command("incus", "query", "/1.0/images/"+a.Target).Output()
	if err != nil {
		t.Fatalf("incus query image %s: %v", a.Target, err)
	}
	var img struct{ Properties map[string]string }
	json.Unmarshal(out, &img)
	return img.Properties
}

func bridgeGateway(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("incus", "network", "get", sandbox.IncusDefaultNetwork, "ipv4.address").Output()
	if err != nil {
		t.Fatalf("incus network get: %v", err)
	}
	addr, _, _ := strings.Cut(strings.TrimSpace(string(out)), "/")
	return addr
}

// buildInstances lists the build instances there are.
func buildInstances(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("incus", "list", "airlock-build-", "-c", "n", "-f", "csv").Output()
	if err != nil {
		t.Fatalf("incus list: %v", err)
	}
	return string(out)
}

func deleteIncusImage(aliases ...string) {
	for _, a := range aliases {
		exec.Command("incus", "image", "delete", "local:"+a).Run()
	}
}
