package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-lb/sluice/internal/migrate"
	"github.com/sluice-lb/sluice/internal/source"
)

const migrateUsage = `usage: sluicectl migrate metallb (-f FILE_OR_DIR [-f ...] | --from-cluster) [flags]

Converts MetalLB configuration into Sluice's and prints it as YAML (for kubectl apply -f, or
the agent's --config). Every object or field without an exact equivalent is reported, on
stderr and in the output's header. The cluster is changed only with --apply.

Exit status: 0 when everything was converted, 1 when something was not (an "error" note),
2 on usage errors or when the input or cluster cannot be read.
`

// migrateCmd is `sluicectl migrate metallb`.
func migrateCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "metallb" {
		fmt.Fprint(stderr, migrateUsage)
		return 2
	}
	fs := flag.NewFlagSet("sluicectl migrate metallb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, migrateUsage, "\nFlags:\n"); fs.PrintDefaults() }
	var files multiFlag
	fs.Var(&files, "f", "MetalLB YAML: a file, a directory of .yaml/.yml/.json files, or - for stdin (repeatable)")
	fromCluster := fs.Bool("from-cluster", false, "read MetalLB's objects, its legacy ConfigMap and the LoadBalancer Services from the cluster")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	mlbNamespace := fs.String("metallb-namespace", "metallb-system", "MetalLB's namespace: where its objects and its legacy ConfigMap are read (MetalLB reads no other)")
	mlbConfigMap := fs.String("metallb-configmap", "config", "the name of MetalLB's legacy ConfigMap (Helm installs of 0.12 and older: the release name, e.g. metallb)")
	namespace := fs.String("namespace", migrate.DefaultNamespace, "the Sluice agent's namespace: where password Secrets are written")
	outFile := fs.String("o", "", "write the YAML to this file instead of stdout")
	apply := fs.Bool("apply", false, "also apply the converted objects to the cluster (server-side apply); without it the cluster is never changed")
	force := fs.Bool("force", false, "with --apply: apply even when something was not converted")
	notesFormat := fs.String("notes", "text", "how notes are printed on stderr: text or json")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 || (len(files) == 0) == !*fromCluster || (*notesFormat != "text" && *notesFormat != "json") {
		fs.Usage()
		return 2
	}
	var objs []*migrate.Object
	var notes []migrate.Note
	var dyn dynamic.Interface
	if *fromCluster || *apply {
		var err error
		if dyn, err = dynamicClient(*kubeconfig); err != nil {
			fmt.Fprintln(stderr, "sluicectl:", err)
			return 2
		}
	}
	if *fromCluster {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		data, err := readCluster(ctx, dyn, *mlbNamespace, *mlbConfigMap)
		cancel()
		if err != nil {
			fmt.Fprintln(stderr, "sluicectl:", err)
			return 2
		}
		objs, notes = migrate.Read(bytes.NewReader(data), "cluster")
	}
	for _, f := range files {
		o, n, err := readInputs(f)
		if err != nil {
			fmt.Fprintln(stderr, "sluicectl:", err)
			return 2
		}
		objs, notes = append(objs, o...), append(notes, n...)
	}
	r := migrate.Convert(objs, migrate.Options{Namespace: *namespace})
	r.Notes = append(notes, r.Notes...)
	if !slices.ContainsFunc(objs, func(o *migrate.Object) bool { return o.MetalLB() }) {
		where := "the input"
		if *fromCluster {
			where = fmt.Sprintf("namespace %s (MetalLB's objects, ConfigMap %s)", *mlbNamespace, *mlbConfigMap)
		}
		r.Notes = append(r.Notes, migrate.Note{Level: migrate.Error, Object: where, Message: "no MetalLB configuration found (another namespace, ConfigMap name or kube context?)"})
	}

	if *outFile != "" {
		if err := writeFile(*outFile, r); err != nil {
			fmt.Fprintln(stderr, "sluicectl:", err)
			return 2
		}
	} else if err := migrate.Write(stdout, r); err != nil {
		fmt.Fprintln(stderr, "sluicectl:", err)
		return 2
	}
	printNotes(stderr, r, *notesFormat)
	if *apply && r.Count(migrate.Error) > 0 && !*force {
		fmt.Fprintln(stderr, "sluicectl: not applied: something was not converted (see the errors above); fix the input, or apply anyway with --force")
		return 1
	}
	if *apply {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := applyAll(ctx, dyn, r, stderr); err != nil {
			fmt.Fprintln(stderr, "sluicectl:", err)
			return 2
		}
	}
	if r.Count(migrate.Error) > 0 {
		return 1
	}
	return 0
}

// writeFile writes the YAML to path through a new file of mode 0600 (it may hold passwords),
// renamed into place only once complete.
func writeFile(path string, r *migrate.Result) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a rename, nothing to remove
	if err := errors.Join(migrate.Write(f, r), f.Chmod(0o600)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func printNotes(w io.Writer, r *migrate.Result, format string) {
	if format == "json" {
		enc := json.NewEncoder(w)
		for _, n := range r.Notes {
			_ = enc.Encode(n)
		}
		return
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, n)
	}
	fmt.Fprintf(w, "sluicectl: %d objects converted; %d errors, %d warnings, %d notes\n",
		len(r.Objects), r.Count(migrate.Error), r.Count(migrate.Warning), r.Count(migrate.Info))
}

// readInputs reads a file, every .yaml/.yml/.json file of a directory, or stdin ("-").
func readInputs(path string) ([]*migrate.Object, []migrate.Note, error) {
	if path == "-" {
		o, n := migrate.Read(os.Stdin, "stdin")
		return o, n, nil
	}
	paths, err := source.ConfigFiles(path)
	if err != nil {
		return nil, nil, err
	}
	var objs []*migrate.Object
	var notes []migrate.Note
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, nil, err
		}
		o, n := migrate.Read(f, p)
		f.Close()
		objs, notes = append(objs, o...), append(notes, n...)
	}
	return objs, notes, nil
}

func dynamicClient(kubeconfig string) (dynamic.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return dynamic.NewForConfig(rc)
}

// metallbResources are the MetalLB kinds read from a cluster, newest version first.
var metallbResources = []struct {
	resource string
	versions []string
}{
	{"ipaddresspools", []string{"v1beta1"}},
	{"l2advertisements", []string{"v1beta1"}},
	{"bgpadvertisements", []string{"v1beta1"}},
	{"bgppeers", []string{"v1beta2", "v1beta1"}},
	{"bfdprofiles", []string{"v1beta1"}},
	{"communities", []string{"v1beta1"}},
	{"addresspools", []string{"v1beta1", "v1alpha1"}},
}

// readCluster reads MetalLB's configuration, the Secrets its peers name and the
// LoadBalancer Services from the cluster, as one List for migrate.Read. A kind the cluster
// does not serve (an older or newer MetalLB) is skipped.
func readCluster(ctx context.Context, dyn dynamic.Interface, mlbNamespace, configMap string) ([]byte, error) {
	var items []map[string]any
	for _, r := range metallbResources {
		for _, v := range r.versions {
			list, err := dyn.Resource(schema.GroupVersionResource{Group: migrate.Group, Version: v, Resource: r.resource}).Namespace(mlbNamespace).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				continue // not served in this version
			}
			if err != nil {
				return nil, fmt.Errorf("listing %s.%s/%s: %w", r.resource, migrate.Group, v, err)
			}
			for _, it := range list.Items {
				items = append(items, it.Object)
			}
			break
		}
	}
	secrets := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"})
	var names []string
	for _, it := range items {
		name, _, _ := unstructured.NestedString(it, "spec", "passwordSecret", "name")
		ns, _, _ := unstructured.NestedString(it, "spec", "passwordSecret", "namespace")
		if ns == "" {
			ns, _, _ = unstructured.NestedString(it, "metadata", "namespace")
		}
		if name != "" && !slices.Contains(names, ns+"/"+name) {
			names = append(names, ns+"/"+name)
		}
	}
	for _, key := range names {
		ns, name, _ := strings.Cut(key, "/")
		s, err := secrets.Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // the converter says so
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s: %w", key, err)
		}
		items = append(items, s.Object)
	}
	for _, name := range []string{configMap, "metallb-excludel2"} {
		cm, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(mlbNamespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			items = append(items, cm.Object)
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", mlbNamespace, name, err)
		}
	}
	svcs, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "services"}).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	for _, s := range svcs.Items {
		if t, _, _ := unstructured.NestedString(s.Object, "spec", "type"); t == "LoadBalancer" {
			items = append(items, s.Object)
		}
	}
	return json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}

// applyAll server-side applies every converted object, in order (Secrets first).
func applyAll(ctx context.Context, dyn dynamic.Interface, r *migrate.Result, log io.Writer) error {
	var errs []error
	for _, c := range r.Objects {
		u, err := migrate.Unstructured(c.Object)
		if err != nil {
			return err
		}
		gvk := u.GroupVersionKind()
		gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"}
		data, err := json.Marshal(u.Object)
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if u.GetNamespace() != "" {
			ri = dyn.Resource(gvr).Namespace(u.GetNamespace())
		}
		force := true
		_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "sluicectl-migrate", Force: &force})
		if err != nil {
			if apierrors.IsNotFound(err) && gvk.Group != "" {
				err = fmt.Errorf("%w (are Sluice's CRDs installed? kubectl apply -f manifests/crds)", err)
			}
			errs = append(errs, fmt.Errorf("applying %s %s: %w", gvk.Kind, u.GetName(), err))
			continue
		}
		fmt.Fprintf(log, "applied %s %s\n", gvk.Kind, u.GetName())
	}
	return errors.Join(errs...)
}
