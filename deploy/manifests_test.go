package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// rendered is the kustomization rendered and decoded, by kind.
type rendered struct {
	deployments  []*appsv1.Deployment
	daemonSets   []*appsv1.DaemonSet
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	pdbs         []*policyv1.PodDisruptionBudget
	policies     []*networkingv1.NetworkPolicy
	namespaces   []*corev1.Namespace
}

// render runs kustomize on kubernetes/ (as `kubectl kustomize` does) and
// decodes every object strictly: an unknown or misspelt field, a wrong
// type or an unknown kind is an error.
func render(t *testing.T) *rendered {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "kubernetes")
	if err != nil {
		t.Fatalf("kustomize: %v", err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	codec := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
	out := &rendered{configMaps: map[string]*corev1.ConfigMap{}}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, gvk, err := codec.Decode(y, nil, nil)
		if err != nil {
			t.Fatalf("%s/%s does not decode strictly: %v\n%s", r.GetKind(), r.GetName(), err, y)
		}
		if ns := r.GetNamespace(); gvk.Kind != "Namespace" && ns != "strait" {
			t.Errorf("%s/%s in namespace %q, want strait", gvk.Kind, r.GetName(), ns)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			out.deployments = append(out.deployments, o)
		case *appsv1.DaemonSet:
			out.daemonSets = append(out.daemonSets, o)
		case *appsv1.StatefulSet:
			out.statefulSets = append(out.statefulSets, o)
		case *corev1.Service:
			out.services = append(out.services, o)
		case *corev1.ConfigMap:
			out.configMaps[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			out.pdbs = append(out.pdbs, o)
		case *networkingv1.NetworkPolicy:
			out.policies = append(out.policies, o)
		case *corev1.Namespace:
			out.namespaces = append(out.namespaces, o)
		default:
			t.Errorf("unexpected kind %s", gvk)
		}
	}
	return out
}

// secrets returns the Secrets the pods use and the keys they read (a
// volume reads the keys its container's configuration names).
func (r *rendered) secrets() map[string][]string {
	out := map[string][]string{}
	add := func(name, key string) {
		if !slices.Contains(out[name], key) {
			out[name] = append(out[name], key)
		}
	}
	for _, w := range r.workloads() {
		for _, c := range w.pod.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					add(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			}
			for _, m := range c.VolumeMounts {
				for _, v := range w.pod.Spec.Volumes {
					if v.Name != m.Name || v.Secret == nil {
						continue
					}
					for _, cm := range r.mountedConfigMaps(w.pod.Spec, c) {
						for _, data := range cm.Data {
							for _, p := range regexp.MustCompile(regexp.QuoteMeta(m.MountPath)+`/([\w.-]+)`).FindAllStringSubmatch(data, -1) {
								add(v.Secret.SecretName, p[1])
							}
						}
					}
				}
			}
		}
	}
	return out
}

// mountedConfigMaps returns the ConfigMaps c mounts.
func (r *rendered) mountedConfigMaps(ps corev1.PodSpec, c corev1.Container) []*corev1.ConfigMap {
	var out []*corev1.ConfigMap
	for _, m := range c.VolumeMounts {
		for _, v := range ps.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && r.configMaps[v.ConfigMap.Name] != nil {
				out = append(out, r.configMaps[v.ConfigMap.Name])
			}
		}
	}
	return out
}

// workload is a pod template and what owns it.
type workload struct {
	kind, name string
	selector   map[string]string
	pod        *corev1.PodTemplateSpec
}

func (r *rendered) workloads() []workload {
	var out []workload
	for _, d := range r.deployments {
		out = append(out, workload{"Deployment", d.Name, d.Spec.Selector.MatchLabels, &d.Spec.Template})
	}
	for _, d := range r.daemonSets {
		out = append(out, workload{"DaemonSet", d.Name, d.Spec.Selector.MatchLabels, &d.Spec.Template})
	}
	for _, s := range r.statefulSets {
		out = append(out, workload{"StatefulSet", s.Name, s.Spec.Selector.MatchLabels, &s.Spec.Template})
	}
	return out
}

// TestManifests checks what the issue asks of the deployment beyond
// decoding: the control plane as a 2-replica Deployment behind a Service,
// the nodes as a host-network DaemonSet with the WebRTC ports declared,
// Redis, probes on /healthz and /readyz, disruption budgets, resource
// requests, non-root containers, and that every reference (Service to
// pods, port names, ConfigMaps) resolves.
func TestManifests(t *testing.T) {
	r := render(t)
	if len(r.deployments) != 1 || len(r.daemonSets) != 1 || len(r.statefulSets) != 1 {
		t.Fatalf("want one Deployment, DaemonSet and StatefulSet; got %d, %d, %d", len(r.deployments), len(r.daemonSets), len(r.statefulSets))
	}
	cp, dp := r.deployments[0], r.daemonSets[0]
	if cp.Spec.Replicas == nil || *cp.Spec.Replicas != 2 {
		t.Errorf("control plane replicas %v, want 2", cp.Spec.Replicas)
	}
	if !dp.Spec.Template.Spec.HostNetwork || dp.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dataplane: hostNetwork %v, dnsPolicy %q", dp.Spec.Template.Spec.HostNetwork, dp.Spec.Template.Spec.DNSPolicy)
	}
	if r.statefulSets[0].Spec.Template.Spec.Containers[0].Name != "redis" {
		t.Errorf("the StatefulSet is not Redis")
	}

	for _, w := range r.workloads() {
		if !labels.SelectorFromSet(w.selector).Matches(labels.Set(w.pod.Labels)) {
			t.Errorf("%s %s: selector %v does not match its pods %v", w.kind, w.name, w.selector, w.pod.Labels)
		}
		ps := w.pod.Spec
		if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
			t.Errorf("%s %s: pods may run as root", w.kind, w.name)
		}
		for _, c := range ps.Containers {
			where := fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s: no CPU or memory request", where)
			}
			if c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s: no memory limit", where)
			}
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s: want no privilege escalation, a read-only root and every capability dropped", where)
			}
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: liveness and readiness probes required", where)
			}
			for _, pr := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
				if pr != nil && pr.HTTPGet != nil && !hasPort(c, pr.HTTPGet.Port, corev1.ProtocolTCP) {
					t.Errorf("%s: probe port %s is not a container port", where, pr.HTTPGet.Port.String())
				}
			}
			for _, v := range ps.Volumes {
				if v.ConfigMap != nil && r.configMaps[v.ConfigMap.Name] == nil {
					t.Errorf("%s: volume %s names ConfigMap %s, which is not rendered", where, v.Name, v.ConfigMap.Name)
				}
			}
		}
	}
	// The Strait containers probe /healthz for liveness and /readyz for
	// readiness (the image is ours; Redis has its own probes).
	for _, w := range r.workloads() {
		for _, c := range w.pod.Spec.Containers {
			if !strings.HasPrefix(c.Image, "ghcr.io/strait-sbc/strait") {
				continue
			}
			if c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
				c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("%s %s: want liveness on /healthz and readiness on /readyz", w.kind, w.name)
			}
		}
	}

	// Every Service selects pods of a workload and names their ports.
	for _, s := range r.services {
		var match []workload
		for _, w := range r.workloads() {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.pod.Labels)) {
				match = append(match, w)
			}
		}
		if len(match) != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", s.Name, len(match))
			continue
		}
		for _, p := range s.Spec.Ports {
			if !hasPort(match[0].pod.Spec.Containers[0], p.TargetPort, p.Protocol) {
				t.Errorf("Service %s port %s: target %s/%s is not a port of %s", s.Name, p.Name, p.TargetPort.String(), p.Protocol, match[0].name)
			}
		}
	}
	// The Secrets the pods need are created by the operator, as
	// README.md says, key by key.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, keys := range r.secrets() {
		for _, k := range keys {
			if !regexp.MustCompile(`create secret \w+ ` + name + `\b[^\n]*(--from-literal=|--from-file=)` + regexp.QuoteMeta(k) + `[=\s]`).Match(readme) {
				t.Errorf("README.md does not say how to create Secret %s with key %s", name, k)
			}
		}
	}
	var cpSvc *corev1.Service
	for _, s := range r.services {
		if s.Name == "strait" {
			cpSvc = s
		}
	}
	if cpSvc == nil || cpSvc.Spec.Type != corev1.ServiceTypeLoadBalancer || cpSvc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("the control planes' Service must be a LoadBalancer keeping client addresses (Local)")
	}

	// A disruption budget for the control planes and the nodes.
	covered := map[string]bool{}
	for _, p := range r.pdbs {
		sel, err := labelsSelector(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range r.workloads() {
			if sel.Matches(labels.Set(w.pod.Labels)) {
				covered[w.name] = true
			}
		}
	}
	if !covered[cp.Name] || !covered[dp.Name] {
		t.Errorf("disruption budgets cover %v; want %s and %s", covered, cp.Name, dp.Name)
	}
}

func labelsSelector(p *policyv1.PodDisruptionBudget) (labels.Selector, error) {
	if p.Spec.Selector == nil {
		return nil, fmt.Errorf("PodDisruptionBudget %s has no selector", p.Name)
	}
	return labels.SelectorFromSet(p.Spec.Selector.MatchLabels), nil
}

// hasPort reports whether c declares port (a name or number) with proto.
func hasPort(c corev1.Container, port intstr.IntOrString, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range c.Ports {
		pp := p.Protocol
		if pp == "" {
			pp = corev1.ProtocolTCP
		}
		if pp != proto {
			continue
		}
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

// TestDataplanePorts checks the node's ports against its configuration:
// every shared WebRTC port is declared on the host, and the DaemonSet's
// termination grace outlasts the drain.
func TestDataplanePorts(t *testing.T) {
	r := render(t)
	dp := r.daemonSets[0]
	c := dp.Spec.Template.Spec.Containers[0]
	cfg := configFile(t, r, dp.Spec.Template.Spec, c)
	first, last := portRange(t, cfg["webrtc_ports"])
	if last-first > 15 {
		t.Errorf("webrtc_ports %d-%d: the shared ports should stay a narrow range", first, last)
	}
	for p := first; p <= last; p++ {
		declared := false
		for _, cp := range c.Ports {
			if cp.ContainerPort == int32(p) && cp.HostPort == int32(p) && cp.Protocol == corev1.ProtocolUDP {
				declared = true
			}
		}
		if !declared {
			t.Errorf("WebRTC port %d/udp not declared as a host port", p)
		}
	}
	drain := cfg["drain_timeout"]
	d, err := parseDuration(drain)
	if err != nil {
		t.Fatal(err)
	}
	if g := dp.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= int64(d) {
		t.Errorf("terminationGracePeriodSeconds %v does not outlast drain_timeout %s", g, drain)
	}
}

// configFile returns the YAML configuration file a container is started
// with (--config PATH, from a mounted ConfigMap) as a map.
func configFile(t *testing.T, r *rendered, ps corev1.PodSpec, c corev1.Container) map[string]any {
	t.Helper()
	data := materialise(t, r, ps, c, t.TempDir())
	var path string
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			path = c.Args[i+1]
		}
	}
	b, ok := data[path]
	if !ok {
		t.Fatalf("container %s: --config %q is not in a mounted ConfigMap", c.Name, path)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// materialise writes c's ConfigMap mounts under root (as the kubelet would
// at their mount paths) and returns their files by in-container path.
func materialise(t *testing.T, r *rendered, ps corev1.PodSpec, c corev1.Container, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, m := range c.VolumeMounts {
		for _, v := range ps.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			cm := r.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("ConfigMap %s is not rendered", v.ConfigMap.Name)
			}
			for k, val := range cm.Data {
				p := filepath.Join(m.MountPath, k)
				out[p] = []byte(val)
				host := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(host, []byte(val), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return out
}

func portRange(t *testing.T, v any) (int, int) {
	t.Helper()
	s := fmt.Sprint(v)
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || last < first {
		t.Fatalf("port range %q", s)
	}
	return first, last
}

// parseDuration parses a Go duration into whole seconds.
func parseDuration(s any) (int, error) {
	d, err := time.ParseDuration(fmt.Sprint(s))
	return int(d.Seconds()), err
}

var envRef = regexp.MustCompile(`\$\((\w+)\)`)

// TestContainersAcceptTheirConfiguration starts each Strait container's
// binary (built as the Dockerfile builds it) with the container's
// arguments and environment and the ConfigMap files where they are
// mounted, plus -help: the binary reads the file strictly (an unknown key
// is an error), parses every flag and every environment value, then prints
// its flags and exits. Variables meant for it must name one of its flags
// (a misspelt STRAIT_* variable would otherwise be ignored), and every
// file its configuration names must be under one of the container's
// mounts.
func TestContainersAcceptTheirConfiguration(t *testing.T) {
	r := render(t)
	bins := buildBinaries(t)
	for _, w := range r.workloads() {
		for _, c := range w.pod.Spec.Containers {
			if !strings.HasPrefix(c.Image, "ghcr.io/strait-sbc/strait") {
				continue
			}
			t.Run(w.name, func(t *testing.T) {
				bin, prefix := "strait", "STRAIT_"
				if len(c.Command) > 0 {
					bin = filepath.Base(c.Command[0])
				}
				if bin == "strait-dataplane" {
					prefix = "STRAIT_DATAPLANE_"
				}
				root := t.TempDir()
				files := materialise(t, r, w.pod.Spec, c, root)
				args := slices.Clone(c.Args)
				for i, a := range args {
					if _, ok := files[a]; ok {
						args[i] = filepath.Join(root, a)
					}
				}
				env := containerEnv(t, c)
				cmd := exec.Command(filepath.Join(bins, bin), append(args, "-help")...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
				for k, v := range env {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s %v with the container's environment: %v\n%s", bin, args, err, out)
				}
				flags := map[string]bool{}
				for _, m := range regexp.MustCompile(`(?m)^\s+--?(\w[\w-]*)`).FindAllStringSubmatch(string(out), -1) {
					flags[m[1]] = true
				}
				for k := range env {
					name, ok := strings.CutPrefix(k, prefix)
					if !ok {
						continue
					}
					if f := strings.ToLower(strings.ReplaceAll(name, "_", "-")); !flags[f] {
						t.Errorf("%s is no flag of %s (--%s)", k, bin, f)
					}
				}
				// Files the configuration names are mounted.
				for _, b := range files {
					for _, p := range regexp.MustCompile(`/etc/strait/[\w./-]+`).FindAllString(string(b), -1) {
						if !mounted(c, p) {
							t.Errorf("%s names %s, which no volume of the container holds", bin, p)
						}
					}
				}
			})
		}
	}
}

// containerEnv resolves c's environment as the kubelet would: fields and
// secrets get stand-in values, $(NAME) refers to earlier variables.
func containerEnv(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
			v = envRef.ReplaceAllStringFunc(v, func(m string) string {
				name := envRef.FindStringSubmatch(m)[1]
				if got, ok := env[name]; ok {
					return got
				}
				t.Errorf("env %s refers to $(%s), not defined before it", e.Name, name)
				return m
			})
		case e.ValueFrom.FieldRef != nil:
			v = map[string]string{"status.hostIP": "192.0.2.10", "status.podIP": "192.0.2.20",
				"spec.nodeName": "media-1", "metadata.name": "strait-0"}[e.ValueFrom.FieldRef.FieldPath]
			if v == "" {
				t.Errorf("env %s: no stand-in for field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			v = "secret-" + e.ValueFrom.SecretKeyRef.Key
		}
		env[e.Name] = v
	}
	return env
}

func mounted(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}
