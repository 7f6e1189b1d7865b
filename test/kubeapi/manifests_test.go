package kubeapi_test

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

// chart is the Helm chart's directory.
func chart(t *testing.T) string {
	root, err := kubeapi.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "manifests", "helm", "sluice")
}

// helmTemplate renders the chart with args (--set ...) into sluice-system.
func helmTemplate(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	helm := testenv.RequireAsset(t, "helm")
	out, err := exec.Command(helm, append([]string{"template", "sluice", chart(t), "--namespace", "sluice-system"}, args...)...).Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderrOf(err))
	}
	objs, err := kubeapi.DecodeObjects(strings.NewReader(string(out)))
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return objs
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// find returns the rendered object of kind and name, converted to T, or nil.
func find[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			v := new(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return nil
}

// allows reports whether rules grant verb on group/resource.
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	return slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb)
	})
}

// TestHelmChart: the chart lints, and renders what its values say: the agent on the host
// network with exactly the capabilities it needs and not privileged, the IPAM controller
// as a Deployment of its own, and each component's RBAC following where the IPAM
// controller runs.
func TestHelmChart(t *testing.T) {
	helm := testenv.RequireAsset(t, "helm")
	if out, err := exec.Command(helm, "lint", "--strict", chart(t)).CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}

	objs := helmTemplate(t, "--set", "agent.devices={eth0,bond0}", "--set", "image.tag=v9")
	ds := find[appsv1.DaemonSet](t, objs, "DaemonSet", "sluice-agent")
	if ds == nil {
		t.Fatal("no DaemonSet sluice-agent")
	}
	pod := ds.Spec.Template.Spec
	agent := pod.Containers[0]
	sc := agent.SecurityContext
	wantCaps := []string{"BPF", "PERFMON", "NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"}
	var caps []string
	for _, c := range sc.Capabilities.Add {
		caps = append(caps, string(c))
	}
	if !pod.HostNetwork || sc.Privileged == nil || *sc.Privileged || !slices.Equal(caps, wantCaps) ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || agent.Image != "ghcr.io/sluice-lb/sluice-agent:v9" {
		t.Errorf("agent: hostNetwork %v, image %s, security %+v; want host network, not privileged, drop ALL, add %v", pod.HostNetwork, agent.Image, sc, wantCaps)
	}
	for _, arg := range []string{"--devices=eth0,bond0", "--ipam-controller=false", "--node-name=$(NODE_NAME)", "--cgroup-root=/run/sluice/cgroupv2"} {
		if !slices.Contains(agent.Args, arg) {
			t.Errorf("agent args %v lack %s", agent.Args, arg)
		}
	}
	dep := find[appsv1.Deployment](t, objs, "Deployment", "sluice-ipam")
	if dep == nil || *dep.Spec.Replicas != 2 || !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--ipam-only") ||
		dep.Spec.Template.Spec.HostNetwork || len(dep.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add) != 0 {
		t.Errorf("IPAM Deployment: %+v", dep)
	}
	agentRole := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "sluice-agent")
	ipamRole := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "sluice-ipam")
	if agentRole == nil || ipamRole == nil {
		t.Fatal("missing ClusterRoles")
	}
	if allows(agentRole.Rules, "", "services/status", "patch") || allows(agentRole.Rules, "", "secrets", "list") ||
		!allows(agentRole.Rules, "discovery.k8s.io", "endpointslices", "watch") {
		t.Errorf("agent ClusterRole, the IPAM controller running apart: %+v", agentRole.Rules)
	}
	if !allows(ipamRole.Rules, "", "services/status", "patch") || allows(ipamRole.Rules, "discovery.k8s.io", "endpointslices", "list") {
		t.Errorf("ipam ClusterRole: %+v", ipamRole.Rules)
	}

	// The API server's address where no kube-proxy serves the kubernetes Service.
	objs = helmTemplate(t, "--set", "k8sServiceHost=192.0.2.1", "--set", "agent.extraEnv[0].name=GODEBUG", "--set", "agent.extraEnv[0].value=x")
	ds = find[appsv1.DaemonSet](t, objs, "DaemonSet", "sluice-agent")
	dep = find[appsv1.Deployment](t, objs, "Deployment", "sluice-ipam")
	for _, env := range [][]corev1.EnvVar{ds.Spec.Template.Spec.Containers[0].Env, dep.Spec.Template.Spec.Containers[0].Env} {
		if !slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == "KUBERNETES_SERVICE_HOST" && e.Value == "192.0.2.1" }) ||
			!slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == "KUBERNETES_SERVICE_PORT" && e.Value == "6443" }) {
			t.Errorf("k8sServiceHost: env %+v", env)
		}
	}
	if !slices.ContainsFunc(ds.Spec.Template.Spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == "GODEBUG" }) {
		t.Errorf("agent.extraEnv missing: %+v", ds.Spec.Template.Spec.Containers[0].Env)
	}

	// The IPAM controller inside the agents instead.
	objs = helmTemplate(t, "--set", "ipam.enabled=false", "--set", "agent.ipamController=true")
	if find[appsv1.Deployment](t, objs, "Deployment", "sluice-ipam") != nil {
		t.Error("ipam.enabled=false still renders the IPAM Deployment")
	}
	agentRole = find[rbacv1.ClusterRole](t, objs, "ClusterRole", "sluice-agent")
	role := find[rbacv1.Role](t, objs, "Role", "sluice-agent")
	if !allows(agentRole.Rules, "", "services/status", "patch") || !allows(role.Rules, "coordination.k8s.io", "leases", "update") {
		t.Errorf("agent RBAC with its IPAM controller: %+v %+v", agentRole.Rules, role.Rules)
	}
	if ds := find[appsv1.DaemonSet](t, objs, "DaemonSet", "sluice-agent"); !slices.Contains(ds.Spec.Template.Spec.Containers[0].Args, "--ipam-controller=true") {
		t.Errorf("agent args %v", ds.Spec.Template.Spec.Containers[0].Args)
	}
}

// TestManifestsServerDryRun: the rendered install (manifests/sluice.yaml, and the chart with
// other values) passes `kubectl apply --dry-run=server` against the real API server, which
// checks every object against its schema, admission and the CRDs.
func TestManifestsServerDryRun(t *testing.T) {
	kubectl := testenv.RequireAsset(t, "kubectl")
	env := kubeapi.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.EnsureNamespace(ctx, "sluice-system"); err != nil {
		t.Fatal(err)
	}
	kubeconfig := env.KubeConfigFile(t, t.TempDir())
	root, err := kubeapi.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	helm := testenv.RequireAsset(t, "helm")
	variant, err := exec.Command(helm, "template", "sluice", chart(t), "--namespace", "sluice-system",
		"--set", "ipam.enabled=false", "--set", "agent.ipamController=true", "--set", "agent.devices={eth0}",
		"--set", "agent.nodeSelector.sluice\\.dev/agent=true").Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderrOf(err))
	}
	variantFile := filepath.Join(t.TempDir(), "variant.yaml")
	if err := os.WriteFile(variantFile, variant, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(root, "manifests", "sluice.yaml"), variantFile} {
		out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "--dry-run=server", "-f", f).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl apply --dry-run=server -f %s: %v\n%s", filepath.Base(f), err, out)
			continue
		}
		for _, want := range []string{"daemonset.apps/sluice-agent serverside-applied (server dry run)", "clusterrole.rbac.authorization.k8s.io/sluice-agent serverside-applied (server dry run)"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("kubectl apply --dry-run=server -f %s says no %q:\n%s", filepath.Base(f), want, out)
			}
		}
	}
	// A broken object is refused by the same command: the dry run does check.
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x, namespace: sluice-system}\nspec: {template: {spec: {containers: []}}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "--dry-run=server", "-f", broken).CombinedOutput(); err == nil {
		t.Errorf("a DaemonSet without a selector or containers passed the dry run:\n%s", out)
	}
}

// TestDockerfiles: every command has a Dockerfile, and the build command in it, run here as
// written (no Docker engine runs on this machine), yields a static binary: one that runs on
// the distroless static base image it is copied onto.
func TestDockerfiles(t *testing.T) {
	root, err := kubeapi.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(root, "cmd", c.Name(), "Dockerfile"))
			if err != nil {
				t.Fatalf("no Dockerfile: %v", err)
			}
			// The RUN line that builds: continuation lines joined.
			joined := strings.ReplaceAll(string(text), "\\\n", " ")
			var build string
			for line := range strings.Lines(joined) {
				if strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build") {
					build = strings.TrimSpace(strings.TrimPrefix(line, "RUN "))
				}
			}
			want := "-o /out/" + c.Name() + " ./cmd/" + c.Name()
			if !strings.Contains(build, want) || !strings.Contains(build, "CGO_ENABLED=0") {
				t.Fatalf("the build line %q does not build ./cmd/%s statically into /out/%s", build, c.Name(), c.Name())
			}
			if !strings.Contains(string(text), "COPY --from=build /out/"+c.Name()+" ") {
				t.Errorf("the Dockerfile does not copy /out/%s into the image", c.Name())
			}
			out := t.TempDir()
			cmd := exec.Command("sh", "-c", strings.ReplaceAll(strings.ReplaceAll(build, "${VERSION}", "test"), "/out/", out+"/"))
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", build, err, b)
			}
			f, err := elf.Open(filepath.Join(out, c.Name()))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s needs a dynamic loader: it would not run on distroless static", c.Name())
				}
			}
		})
	}
}
