package sandbox

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDockerfileRefuses(t *testing.T) {
	tests := []struct {
		name, dockerfile, want string
	}{
		{"unsupported instruction", "FROM a\nRUN true\nADD x /x\n", "Dockerfile line 3: ADD is not supported on Incus (its builder runs FROM, ARG"},
		{"healthcheck", "FROM a\nHEALTHCHECK CMD true\n", "Dockerfile line 2: HEALTHCHECK is not supported"},
		{"multi-stage", "FROM a AS one\nRUN true\nFROM b\n", "Dockerfile line 3: a second FROM (a multi-stage build) is not supported"},
		{"copy --from", "FROM a\nCOPY --from=one /x /x\n", "Dockerfile line 2: COPY --from=one is not supported"},
		{"run --mount", "FROM a\nRUN --mount=type=cache,target=/c true\n", "Dockerfile line 2: RUN --mount=type=cache,target=/c is not supported"},
		{"from --platform", "FROM --platform=linux/arm64 a\n", "Dockerfile line 1: FROM --platform=linux/arm64 is not supported"},
		{"heredoc", "FROM a\nRUN <<EOF\ntrue\nEOF\n", "Dockerfile line 2: RUN with a heredoc is not supported"},
		{"before FROM", "ENV A=1\nFROM a\n", "Dockerfile line 1: ENV before FROM"},
		{"no FROM", "ARG A\n", "Dockerfile: no FROM instruction"},
		{"bad arg name", "ARG 1A=x\nFROM a\n", `Dockerfile line 1: ARG "1A": not a valid variable name`},
		{"copy one word", "FROM a\nCOPY x\n", "Dockerfile line 2: COPY needs a source and a destination"},
		{"two users", "FROM a\nUSER a b\n", "Dockerfile line 2: USER takes one argument"},
		{"parse error", "FROM a\nENV\n", "Dockerfile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDockerfile("Dockerfile", []byte(tt.dockerfile))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDockerfilePlan(t *testing.T) {
	const dockerfile = `# syntax=docker/dockerfile:1
ARG BASE=busybox
ARG TAG
FROM ${BASE}:${TAG:-1}
ARG GREETING=hi
ARG TAG
ENV PATH=/opt/bin:$PATH \
    WHO="the builder"
LABEL org.example.name="a b" version=$TAG
COPY --chown=agent:agent ["greeting", "sub/", "/home/$GREETING/"]
WORKDIR app
WORKDIR /srv/$TAG
COPY ../.. x
RUN echo "$GREETING from $WHO" >/greeting
USER 1000:1000
RUN ["/bin/ls", "-l"]
ENTRYPOINT ["/bin/tini", "--"]
`
	p, err := parseDockerfile("Dockerfile", []byte(dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{"TAG": "7", "UNUSED": "x"}
	if ref, err := p.baseRef(args); err != nil || ref != "busybox:7" {
		t.Fatalf("baseRef = %q, %v; want busybox:7", ref, err)
	}
	if ref, err := p.baseRef(nil); err != nil || ref != "busybox:1" {
		t.Fatalf("baseRef without args = %q, %v; want busybox:1", ref, err)
	}

	base := imageConfig{Env: []string{"PATH=/usr/bin:/bin", "LANG=C"}, User: "root", Cmd: []string{"bash"}, Labels: map[string]string{"from": "base"}}
	ops, cfg, err := p.expand(base, args)
	if err == nil {
		t.Fatalf("expand accepted COPY ../..: %+v", ops)
	}
	if !strings.Contains(err.Error(), "line 13: COPY ../..: outside the build context") {
		t.Errorf("err = %v", err)
	}

	p, err = parseDockerfile("Dockerfile", []byte(strings.Replace(dockerfile, "COPY ../.. x\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	ops, cfg, err = p.expand(base, args)
	if err != nil {
		t.Fatal(err)
	}
	wantCfg := imageConfig{
		Env:        []string{"PATH=/opt/bin:/usr/bin:/bin", "LANG=C", "WHO=the builder"},
		User:       "1000:1000",
		WorkDir:    "/srv/7",
		Entrypoint: []string{"/bin/tini", "--"},
		Cmd:        nil, // a new ENTRYPOINT drops the base's CMD
		Labels:     map[string]string{"from": "base", "org.example.name": "a b", "version": "7"},
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("config =\n%#v\nwant\n%#v", cfg, wantCfg)
	}
	if len(ops) != 11 {
		t.Fatalf("%d ops, want 11: %+v", len(ops), ops)
	}
	if ops[0].Step != "Step 4/14 : ARG GREETING=hi" {
		t.Errorf("first step = %q", ops[0].Step)
	}
	copyOp := ops[4]
	if copyOp.Kind != "copy" || copyOp.Chown != "agent:agent" || copyOp.Dest != "/home/hi/" ||
		!reflect.DeepEqual(copyOp.Sources, []string{"greeting", "sub"}) {
		t.Errorf("COPY = %+v", copyOp)
	}
	if ops[5].Kind != "mkdir" || ops[5].Dest != "/app" || ops[6].Dest != "/srv/7" {
		t.Errorf("WORKDIR ops = %+v, %+v", ops[5], ops[6])
	}
	run := ops[7]
	wantEnv := []string{"PATH=/opt/bin:/usr/bin:/bin", "LANG=C", "WHO=the builder", "GREETING=hi", "TAG=7"}
	if run.Kind != "run" || !reflect.DeepEqual(run.Argv, []string{"/bin/sh", "-c", `echo "$GREETING from $WHO" >/greeting`}) ||
		!reflect.DeepEqual(run.Env, wantEnv) || run.User != "root" || run.Dir != "/srv/7" {
		t.Errorf("RUN = %+v", run)
	}
	if exec := ops[9]; !reflect.DeepEqual(exec.Argv, []string{"/bin/ls", "-l"}) || exec.User != "1000:1000" {
		t.Errorf("exec-form RUN = %+v", exec)
	}

	// The configuration survives its trip through image properties.
	back, err := configFromProperties(cfg.properties())
	if err != nil || !reflect.DeepEqual(back, wantCfg) {
		t.Errorf("properties round trip = %#v, %v", back, err)
	}
}

func TestDockerfilePlanDefaults(t *testing.T) {
	p, err := parseDockerfile("Dockerfile", []byte("FROM scratchy\nRUN env\nCMD echo hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	ops, cfg, err := p.expand(imageConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ops[0].Env, []string{"PATH=" + defaultPath}) {
		t.Errorf("RUN env = %q, want the default PATH", ops[0].Env)
	}
	if !reflect.DeepEqual(cfg.Cmd, []string{"/bin/sh", "-c", "echo hi"}) {
		t.Errorf("shell-form CMD = %q", cfg.Cmd)
	}
	if _, err := p.baseRef(nil); err != nil {
		t.Error(err)
	}
	p, _ = parseDockerfile("Dockerfile", []byte("ARG B\nFROM ${B}\n"))
	if _, err := p.baseRef(nil); err == nil || !strings.Contains(err.Error(), "line 2: FROM ${B} is empty") {
		t.Errorf("empty FROM: err = %v", err)
	}
}
