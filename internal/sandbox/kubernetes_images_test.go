package sandbox

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// What a node reports decides whether a run starts: a bare name matches
// the kubelet's docker.io/library spelling, and a list the kubelet cut
// short leaves the start to the kubelet instead of refusing an image the
// node holds.
func TestReportedImages(t *testing.T) {
	digests := func(n int) []string {
		var names []string
		for i := range n {
			names = append(names, "127.0.0.1:23500/e2e-"+string(rune('a'+i))+"/airlock-claude@sha256:1287")
		}
		return names
	}
	tests := []struct {
		name        string
		images      [][]string
		refs        []string
		has, unsure bool
	}{
		{"bare name as the kubelet spells it", [][]string{{"docker.io/library/airlock-claude:abc"}}, []string{"airlock-claude:abc"}, true, false},
		{"registry name", [][]string{{"reg.example:5000/team/airlock-claude:abc"}}, []string{"airlock-claude:abc", "reg.example:5000/team/airlock-claude:abc"}, true, false},
		{"another tag", [][]string{{"docker.io/library/airlock-claude:old"}}, []string{"airlock-claude:abc"}, false, false},
		{"no images", nil, []string{"airlock-claude:abc"}, false, false},
		{"tag among the first five", [][]string{append(digests(4), "docker.io/library/airlock-claude:abc")}, []string{"airlock-claude:abc"}, true, false},
		// The kubelet's list of five digests dropped the local tag.
		{"names cut at five", [][]string{digests(5)}, []string{"airlock-claude:abc"}, false, true},
		{"four names are all", [][]string{digests(4)}, []string{"airlock-claude:abc"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var images []corev1.ContainerImage
			for _, names := range tt.images {
				images = append(images, corev1.ContainerImage{Names: names})
			}
			has, unsure := reported(images, tt.refs...)
			if has != tt.has || unsure != tt.unsure {
				t.Errorf("reported(%v, %v) = %v, %v; want %v, %v", tt.images, tt.refs, has, unsure, tt.has, tt.unsure)
			}
		})
	}
}
