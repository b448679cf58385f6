package sandbox_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
)

func TestIncusExec(t *testing.T) {
	inc := incusEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("airlock-incus-exec-%d", time.Now().UnixNano()%1e8)
	id, err := inc.Create(ctx, sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"sleep", "600"},
		User: "4242:4343", Env: []string{"FROM_SPEC=yes"}, WorkDir: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inc.Remove(context.Background(), id) })
	if err := inc.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	run := func(spec sandbox.ExecSpec) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		spec.Stdout, spec.Stderr = &out, &errOut
		if spec.User == "" {
			spec.User = "4242:4343"
		}
		code, err := inc.Exec(ctx, id, spec)
		if err != nil {
			t.Fatalf("Exec %v: %v", spec.Cmd, err)
		}
		return code, out.String(), errOut.String()
	}

	code, out, errOut := run(sandbox.ExecSpec{Cmd: []string{"sh", "-c", `id -u; pwd; echo "$FROM_SPEC $EXTRA"; echo oops >&2; exit 7`}, Env: []string{"EXTRA=given"}})
	if code != 7 || out != "4242\n/tmp\nyes given\n" || errOut != "oops\n" {
		t.Errorf("exec = %d, %q, %q; want 7, the user, workdir and environment on stdout, oops on stderr", code, out, errOut)
	}
	if code, out, errOut := run(sandbox.ExecSpec{Cmd: []string{"cat"}, Stdin: strings.NewReader("fed in\n")}); code != 0 || out != "fed in\n" {
		t.Errorf("exec cat with stdin = %d, %q, %q", code, out, errOut)
	}
	_, out, _ = run(sandbox.ExecSpec{Cmd: []string{"cat", "/proc/self/status"}})
	for _, want := range []string{"NoNewPrivs:\t1", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "Uid:\t4242\t4242\t4242\t4242"} {
		if !strings.Contains(out, want) {
			t.Errorf("an exec'd process lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ := run(sandbox.ExecSpec{Cmd: []string{"busybox", "stty", "size"}, TTY: true, Size: sandbox.TermSize{Width: 100, Height: 40}}); code != 0 || strings.TrimSpace(out) != "40 100" {
		t.Errorf("exec with a terminal: stty size = %d, %q; want 40 100", code, out)
	}
	resize := make(chan sandbox.TermSize, 1)
	resize <- sandbox.TermSize{Width: 120, Height: 50}
	if code, out, _ := run(sandbox.ExecSpec{Cmd: []string{"sh", "-c", "sleep 1; busybox stty size"}, TTY: true, Size: sandbox.TermSize{Width: 100, Height: 40}, Resize: resize}); code != 0 || strings.TrimSpace(out) != "50 120" {
		t.Errorf("exec with a resized terminal: stty size = %d, %q; want 50 120", code, out)
	}
	if code, _, errOut := run(sandbox.ExecSpec{Cmd: []string{"no-such-command"}}); code != 127 {
		t.Errorf("exec of a missing command = %d (%s), want 127", code, errOut)
	}
	if _, err := inc.Exec(ctx, id, sandbox.ExecSpec{Cmd: []string{"id"}, User: "0:0"}); err == nil {
		t.Error("exec as root succeeded")
	}

	// Files in and out.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "in.txt", Mode: 0o644, Size: 6, Uid: 4242, Gid: 4343})
	tw.Write([]byte("inside"))
	tw.Close()
	if err := inc.CopyTo(ctx, id, "/tmp", &tb); err != nil {
		t.Fatalf("CopyTo: %v", err)
	}
	info, err := inc.Stat(ctx, id, "/tmp/in.txt")
	if err != nil || info.Size != 6 || !info.Mode.IsRegular() || info.Name != "in.txt" {
		t.Errorf("Stat = %+v, %v", info, err)
	}
	if info, err := inc.Stat(ctx, id, "/tmp"); err != nil || !info.Mode.IsDir() {
		t.Errorf("Stat(/tmp) = %+v, %v", info, err)
	}
	if _, err := inc.Stat(ctx, id, "/nonexistent"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Stat of a missing path: %v, want ErrNotFound", err)
	}
	rc, err := inc.CopyFrom(ctx, id, "/tmp/in.txt")
	if err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatalf("CopyFrom stream: %v", err)
	}
	data, _ := io.ReadAll(tr)
	rc.Close()
	if h.Name != "in.txt" || string(data) != "inside" {
		t.Errorf("CopyFrom gave %s = %q", h.Name, data)
	}
	if _, err := inc.CopyFrom(ctx, id, "/nonexistent"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("CopyFrom of a missing path: %v, want ErrNotFound", err)
	}
}
