package run

import (
	"context"
	"slices"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// What remains of a container someone else removed (on Kubernetes, a
// sandbox's Secret and policies) is cleaned by the rules for the container
// itself: a finished run's and an unknown run's of this registry go; a
// running run's, a persistent run's agent's, another registry's and one
// without a run's label stay.
func TestCleanRemovesRemnants(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	done := w.wait(w.start(w.request("done")))
	req := w.request("kept")
	req.Persistent = true
	kept := w.wait(w.start(req))
	w.setAgent(untilKilled)
	running := w.start(w.request("running"))

	unknown := &store.Run{ID: "gone-00000000", Project: w.repo}
	foreign := &store.Run{ID: "other-00000000", Project: w.repo}
	for name, labels := range map[string]map[string]string{
		ProxyContainerName(unknown.ID): w.m.labels(unknown, "proxy"),
		ProxyContainerName(foreign.ID): {LabelRun: foreign.ID, LabelRole: "proxy", LabelStore: "/elsewhere"},
		"unlabelled":                   {LabelRole: "proxy", LabelStore: w.m.Store.Dir()},
	} {
		if _, err := w.eng.Create(ctx, sandbox.Spec{Name: name, Image: testImage, User: "1000:1000", Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	vanish := []string{done.Container, kept.Container, ProxyContainerName(running.ID),
		ProxyContainerName(unknown.ID), ProxyContainerName(foreign.ID), "unlabelled"}
	for _, name := range vanish {
		if err := w.eng.Vanish(ctx, name); err != nil {
			t.Fatalf("vanish %s: %v", name, err)
		}
	}

	got, err := w.m.Clean(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got.Remnants)
	want := []string{"remnant of " + done.Container, "remnant of " + ProxyContainerName(unknown.ID)}
	slices.Sort(want)
	if !slices.Equal(got.Remnants, want) {
		t.Errorf("Clean removed the remnants %v, want %v", got.Remnants, want)
	}
	left, err := w.eng.Remnants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range left {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	wantLeft := []string{kept.Container, ProxyContainerName(running.ID), ProxyContainerName(foreign.ID), "unlabelled"}
	slices.Sort(wantLeft)
	if !slices.Equal(names, wantLeft) {
		t.Errorf("remnants after Clean: %v, want %v", names, wantLeft)
	}
	if r, _ := w.m.Store.Get(running.ID); r.Status != store.StatusRunning {
		t.Errorf("the running run after Clean: %s", r.Status)
	}
}
