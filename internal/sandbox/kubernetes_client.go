package sandbox

import (
	"context"
	"io"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// kubeAPI speaks to the few resources the engine uses (pods, secrets,
// volume claims, network policies, nodes, runtime classes) through REST clients whose
// scheme knows only their types. client-go's Clientset registers every API
// group of Kubernetes: it made the static airlock binary 2.6 times as large
// (32 → 83 MB), and that binary is copied into every pod of a sandbox.
type kubeAPI struct {
	core, networking, node rest.Interface
	params                 runtime.ParameterCodec
}

func newKubeAPI(cfg *rest.Config) (*kubeAPI, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, networkingv1.AddToScheme, nodev1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme)
	client := func(path string, gv schema.GroupVersion) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.APIPath, c.GroupVersion = path, &gv
		c.NegotiatedSerializer = codecs.WithoutConversion()
		if c.UserAgent == "" {
			c.UserAgent = "airlock"
		}
		return rest.RESTClientFor(c)
	}
	a := &kubeAPI{params: runtime.NewParameterCodec(scheme)}
	var err error
	if a.core, err = client("/api", corev1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if a.networking, err = client("/apis", networkingv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if a.node, err = client("/apis", nodev1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	return a, nil
}

// res is one kind of object in one namespace ("" for cluster-wide ones).
type res struct {
	c        rest.Interface
	ns, name string // name is the resource's: "pods"
}

func (a *kubeAPI) pods(ns string) res     { return res{a.core, ns, "pods"} }
func (a *kubeAPI) secrets(ns string) res  { return res{a.core, ns, "secrets"} }
func (a *kubeAPI) claims(ns string) res   { return res{a.core, ns, "persistentvolumeclaims"} }
func (a *kubeAPI) policies(ns string) res { return res{a.networking, ns, "networkpolicies"} }
func (a *kubeAPI) nodes() res             { return res{a.core, "", "nodes"} }
func (a *kubeAPI) namespaces() res        { return res{a.core, "", "namespaces"} }
func (a *kubeAPI) runtimeClasses() res    { return res{a.node, "", "runtimeclasses"} }

func (r res) req(verb string) *rest.Request {
	return r.c.Verb(verb).NamespaceIfScoped(r.ns, r.ns != "").Resource(r.name)
}

func (r res) get(ctx context.Context, name string, into runtime.Object) error {
	return r.req("GET").Name(name).Do(ctx).Into(into)
}

func (r res) list(ctx context.Context, params runtime.ParameterCodec, selector string, into runtime.Object) error {
	return r.req("GET").VersionedParams(&metav1.ListOptions{LabelSelector: selector}, params).Do(ctx).Into(into)
}

func (r res) create(ctx context.Context, obj, into runtime.Object) error {
	return r.req("POST").Body(obj).Do(ctx).Into(into)
}

func (r res) patch(ctx context.Context, name string, pt types.PatchType, data []byte, into runtime.Object) error {
	return r.req("PATCH").Name(name).SetHeader("Content-Type", string(pt)).Body(data).Do(ctx).Into(into)
}

func (r res) delete(ctx context.Context, name string, opts *metav1.DeleteOptions) error {
	return r.req("DELETE").Name(name).Body(opts).Do(ctx).Error()
}

func (r res) deleteCollection(ctx context.Context, params runtime.ParameterCodec, selector string) error {
	return r.req("DELETE").VersionedParams(&metav1.ListOptions{LabelSelector: selector}, params).Body(&metav1.DeleteOptions{}).Do(ctx).Error()
}

// logs streams a container's log.
func (a *kubeAPI) logs(ctx context.Context, ns, pod, container string) (io.ReadCloser, error) {
	return a.core.Get().Namespace(ns).Resource("pods").Name(pod).SubResource("log").
		VersionedParams(&corev1.PodLogOptions{Container: container}, a.params).Stream(ctx)
}

// serverVersion asks the API server for its version: it answers anyone.
func (a *kubeAPI) serverVersion(ctx context.Context) error {
	return a.core.Get().AbsPath("/version").Do(ctx).Error()
}
