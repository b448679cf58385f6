package sandboxtest

import (
	"archive/tar"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"time"
)

// Image is the reference the suite runs its containers from. A backend's
// test imports BusyboxRootfs under this name before calling RunEngineSuite.
const Image = "airlock-test-busybox:1"

// BusyboxPath is where Debian's busybox-static package installs the binary.
const BusyboxPath = "/bin/busybox"

// BusyboxRootfs writes a tarball of a minimal root filesystem (a static
// busybox and its applet links) to w, ready for `docker import -` or
// `podman import -`. busybox must be statically linked: the image has no
// libc. On Debian: apt-get install busybox-static.
func BusyboxRootfs(w io.Writer, busybox string) error {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read busybox (install it with `apt-get install busybox-static`): %w", err)
	}
	if err := checkStatic(busybox); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin/", 0o755}, {"etc/", 0o755}, {"tmp/", 0o1777}, {"proc/", 0o555}, {"sys/", 0o555}, {"dev/", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, ModTime: mtime}); err != nil {
			return fmt.Errorf("write rootfs tar: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin)), ModTime: mtime}); err != nil {
		return fmt.Errorf("write rootfs tar: %w", err)
	}
	if _, err := tw.Write(bin); err != nil {
		return fmt.Errorf("write rootfs tar: %w", err)
	}
	// The commands the suite's scripts use.
	applets := []string{
		"sh", "sleep", "id", "cat", "touch", "ls", "grep", "echo", "seq", "true", "false",
		"mkdir", "pwd", "env", "kill", "wc", "head", "test", "[", "sed", "stat", "ps",
		// Kubernetes copies mounts in and out with the image's tar, and
		// its tests probe the pod network with nc.
		"tar", "nc", "readlink", "mkfifo", "ln", "dd",
	}
	for _, a := range applets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime}); err != nil {
			return fmt.Errorf("write rootfs tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write rootfs tar: %w", err)
	}
	return nil
}

func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox %s is dynamically linked; the test image has no libc: install busybox-static", path)
		}
	}
	return nil
}
