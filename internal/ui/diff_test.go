package ui

import (
	"reflect"
	"testing"
)

func TestParseDiff(t *testing.T) {
	patch := `diff --git a/main.go b/main.go
index 1111111..2222222 100644
--- a/main.go
+++ b/main.go
@@ -1,3 +1,3 @@
 package main
-// old
+// new <b>
+// added
diff --git a/new.txt b/new.txt
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+--- not a header
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 4444444..0000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/old name.txt b/new name.txt
similarity index 100%
rename from old name.txt
rename to new name.txt
diff --git a/img.png b/img.png
index 5555555..6666666 100644
Binary files a/img.png and b/img.png differ

# Uncommitted changes left by the agent (not committed on airlock/x):

diff --git "a/caf\303\251.txt" "b/caf\303\251.txt"
index 7777777..8888888 100644
--- "a/caf\303\251.txt"
+++ "b/caf\303\251.txt"
@@ -1 +1 @@
-a
+b
`
	files := ParseDiff(patch)
	type summary struct {
		Path, OldPath, Status string
		Add, Del              int
		Binary                bool
	}
	var got []summary
	for _, f := range files {
		got = append(got, summary{f.Path, f.OldPath, f.Status, f.Additions, f.Deletions, f.Binary})
	}
	want := []summary{
		{"main.go", "", "M", 2, 1, false},
		{"new.txt", "", "A", 1, 0, false},
		{"gone.txt", "", "D", 0, 1, false},
		{"new name.txt", "old name.txt", "R", 0, 0, false},
		{"img.png", "", "M", 0, 0, true},
		{"café.txt", "", "M", 1, 1, false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("files:\n got %+v\nwant %+v", got, want)
	}
	if files[4].Patch != "diff --git a/img.png b/img.png\nindex 5555555..6666666 100644\nBinary files a/img.png and b/img.png differ\n" {
		t.Errorf("the binary file's patch took in airlock's header: %q", files[4].Patch)
	}
}
