package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestKubernetesSettings(t *testing.T) {
	dir := t.TempDir()
	user := write(t, dir, "config.toml", `[engine]
kind = "kubernetes"
[engine.kubernetes]
kubeconfig = "kube/config"
context = "team"
namespace = "agents"
runtime_class = "gvisor"
node_selector = ["kubernetes.io/arch=amd64", "pool=agents"]
storage_class = "fast"
registry = "registry.example.test/team/"
warm = 3
cluster_cidrs = ["10.244.1.7/16", "10.96.0.0/12"]
`)
	r, err := Loader{UserPath: user}.Load()
	if err != nil {
		t.Fatal(err)
	}
	k := r.Config.Engine.Kubernetes
	if r.Config.Engine.Kind != "kubernetes" || k.Kubeconfig != filepath.Join(dir, "kube/config") || k.Context != "team" ||
		k.Namespace != "agents" || k.RuntimeClass != "gvisor" || k.StorageClass != "fast" ||
		k.Registry != "registry.example.test/team" || k.Warm != 3 ||
		!slices.Equal(k.NodeSelector, []string{"kubernetes.io/arch=amd64", "pool=agents"}) ||
		!slices.Equal(k.ClusterCIDRs, []string{"10.244.0.0/16", "10.96.0.0/12"}) {
		t.Errorf("engine.kubernetes = %+v", k)
	}
}

func TestKubernetesSettingErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"namespace", `namespace = "Agents"`, `engine.kubernetes.namespace: "Agents" is not a namespace name`},
		{"runtime class", `runtime_class = "g visor"`, `engine.kubernetes.runtime_class: "g visor" is not a RuntimeClass name`},
		{"node selector", `node_selector = ["pool"]`, `engine.kubernetes.node_selector: "pool" is not a node label`},
		{"node selector value", `node_selector = ["pool=a b"]`, `engine.kubernetes.node_selector: "pool=a b" is not a node label`},
		{"registry scheme", `registry = "https://r.test"`, `engine.kubernetes.registry: "https://r.test": name the registry without a scheme`},
		{"registry no host", `registry = "team"`, `engine.kubernetes.registry: "team" does not start with a registry host`},
		{"registry no host path", `registry = "team/agents"`, `engine.kubernetes.registry: "team/agents" does not start with a registry host`},
		{"registry upper-case path", `registry = "r.test/Team"`, `engine.kubernetes.registry: "r.test/Team" is not a registry to push images to`},
		{"registry bad port", `registry = "r.test:http"`, `engine.kubernetes.registry: "r.test:http" is not a registry to push images to`},
		{"registry tag", `registry = "r.test/team:v1"`, `engine.kubernetes.registry: "r.test/team:v1" is not a registry to push images to`},
		{"registry empty element", `registry = "r.test//team"`, `engine.kubernetes.registry: "r.test//team" is not a registry to push images to`},
		{"warm", `warm = -1`, `engine.kubernetes.warm: -1 is out of range`},
		{"cidr", `cluster_cidrs = ["10.0.0.0"]`, `engine.kubernetes.cluster_cidrs: "10.0.0.0" is not a CIDR range`},
		{"tilde", `kubeconfig = "~kube"`, `engine.kubernetes.kubeconfig: "~kube": only ~/ is expanded`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, t.TempDir(), "config.toml", "[engine.kubernetes]\n"+tt.in+"\n")
			_, err := Loader{UserPath: path}.Load()
			if err == nil || !strings.HasPrefix(err.Error(), path+":2: "+tt.want) {
				t.Errorf("error = %v\nwant prefix %q", err, path+":2: "+tt.want)
			}
		})
	}
}

// A repository's own config may not send the run, and the credentials its
// proxy holds, to another cluster, namespace or registry.
func TestKubernetesClusterIsUserOnly(t *testing.T) {
	for _, key := range []string{"kubeconfig", "context", "namespace", "registry"} {
		t.Run(key, func(t *testing.T) {
			dir := t.TempDir()
			proj := write(t, dir, "project.toml", "[engine.kubernetes]\n"+key+" = \"other\"\n")
			_, err := Loader{ProjectPath: proj}.Load()
			if err == nil || !strings.Contains(err.Error(), "engine.kubernetes."+key) {
				t.Errorf("a project config setting engine.kubernetes.%s: err = %v, want it refused", key, err)
			}
		})
	}
}
