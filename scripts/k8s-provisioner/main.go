// airlock-provisioner is the test cluster's dynamic volume provisioner
// (scripts/k8s-cluster.sh): it runs on the node, as root, and gives each
// claim of its StorageClass a directory of its own under -root, as a local
// PersistentVolume pinned to the node. The kubelet applies a pod's fsGroup
// to local volumes, so a non-root pod may write its claim; the directory is
// made 0770 and its group set on first use (hostPath volumes, as
// kube-controller-manager's --enable-hostpath-provisioner makes them, get
// neither). Deleting a volume removes its directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// localDirs provisions a directory per volume below root.
type localDirs struct {
	root string
	node string
}

func (l localDirs) dir(pv string) (string, error) {
	if pv == "" || strings.ContainsAny(pv, "/\\") || pv == "." || pv == ".." {
		return "", fmt.Errorf("volume name %q cannot name a directory", pv)
	}
	return filepath.Join(l.root, pv), nil
}

func (l localDirs) Provision(_ context.Context, o controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	dir, err := l.dir(o.PVName)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	node := o.SelectedNodeName
	if node == "" {
		node = l.node
	}
	if node != l.node {
		return nil, controller.ProvisioningFinished, fmt.Errorf("node %s is not this provisioner's (%s)", node, l.node)
	}
	// Anyone may write until the kubelet sets the pod's fsGroup on it: the
	// root above is root's alone, so only pods that mount it reach it.
	if err := os.Mkdir(dir, 0o777); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, controller.ProvisioningInBackground, err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	pvc := o.PVC
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: o.PVName},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: *o.StorageClass.ReclaimPolicy,
			AccessModes:                   pvc.Spec.AccessModes,
			VolumeMode:                    pvc.Spec.VolumeMode,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: dir},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}}}},
			}},
		},
	}, controller.ProvisioningFinished, nil
}

func (l localDirs) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	dir, err := l.dir(pv.Name)
	if err != nil {
		return err
	}
	if pv.Spec.Local == nil || pv.Spec.Local.Path != dir {
		return &controller.IgnoredError{Reason: "not a volume of this provisioner's directory"}
	}
	// RemoveAll does not follow the links a pod left in it.
	return os.RemoveAll(dir)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "the kubeconfig to reach the API server with")
	name := flag.String("name", "airlock.dev/local", "the provisioner's name (StorageClass.provisioner)")
	root := flag.String("root", "", "the directory the volumes' directories are made in")
	node := flag.String("node", "", "this node's name")
	flag.Parse()
	if *kubeconfig == "" || *root == "" || *node == "" {
		klog.Exit("airlock-provisioner: -kubeconfig, -root and -node are needed")
	}
	if err := os.MkdirAll(*root, 0o700); err != nil {
		klog.Exit(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Exit(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Exit(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pc := controller.NewProvisionController(ctx, client, *name, localDirs{root: *root, node: *node},
		controller.LeaderElection(false))
	pc.Run(ctx)
}
