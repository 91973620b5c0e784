// Package disktest gives tests a small real file system to fill: a tmpfs
// mounted for one test (it needs root), a way to fill it and a way to see
// what is written on it. The out-of-space tests of localstore and of the
// binary use it (docs/reliability.md, "Out of space").
package disktest

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Required reports whether a test that cannot get its file system must
// fail rather than skip: CI=true or INGESTD_REQUIRE_KUBO set (make unit
// and make race set it; CI runs as root).
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("INGESTD_REQUIRE_KUBO") != ""
}

// MountTmpfs mounts a tmpfs of size (mount's syntax: "32m") on a new
// directory, unmounted at the end of the test. Without root the test fails
// when Required, and skips elsewhere.
func MountTmpfs(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "mounting a tmpfs needs root"
		if Required() {
			t.Fatalf("%s; CI=true or INGESTD_REQUIRE_KUBO is set, so this is a failure: run the tests as root", msg)
		}
		t.Skipf("%s; run the tests as root", msg)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("cannot mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("cannot unmount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill appends to path until its file system is full.
func Fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("cannot fill %s: %v", path, err)
			}
			return
		}
	}
}

// UsedBytes is what the files under dir take on disk (tmpfs allocates on
// write, so this is what was written).
func UsedBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
