package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/phiguard/phiguard/metrics"
	"github.com/phiguard/phiguard/policy"
)

// The names the manifests and this test agree on.
const (
	namespace          = "messaging"
	phiguardContainer  = "phiguard"
	appContainer       = "app"
	policyKey          = "policy.yaml"
	deployingDoc       = "../../README.md"
	adminPortName      = "admin"
	serviceAccountIRSA = "eks.amazonaws.com/role-arn"
	irsaSkipContainers = "eks.amazonaws.com/skip-containers"
	monitoringNSLabel  = "kubernetes.io/metadata.name"
	monitoringNS       = "monitoring"
)

// manifest is one decoded YAML document of a manifest file.
type manifest struct {
	file string // slash-separated, relative to examples/kubernetes
	doc  int    // the document's number in its file, from 1
	obj  any    // a pointer to the typed object
}

func (m manifest) String() string { return fmt.Sprintf("%s, document %d", m.file, m.doc) }

// newObject returns an empty typed object for a manifest's apiVersion and
// kind. A kind the example does not use is an error, so a new manifest comes
// with its type here and is decoded as strictly as the others.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, nil
	case "monitoring.coreos.com/v1 PodMonitor":
		return &monitoringv1.PodMonitor{}, nil
	}
	return nil, fmt.Errorf("unknown apiVersion %q kind %q: add its Go type to newObject", apiVersion, kind)
}

// decodeStrict decodes one YAML document into its typed object the way the
// API server's strict field validation does: duplicate keys, unknown fields
// and fields in the wrong case are all errors, each named with its path.
func decodeStrict(doc []byte) (any, error) {
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var head metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
		return nil, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	obj, err := newObject(head.APIVersion, head.Kind)
	if err != nil {
		return nil, err
	}
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(strict...); err != nil {
		return nil, err
	}
	return obj, nil
}

// splitDocuments returns the YAML documents of a multi-document file,
// without those that hold only comments.
func splitDocuments(data []byte) ([][]byte, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := sigsyaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if string(js) != "null" {
			docs = append(docs, doc)
		}
	}
}

// readManifests decodes every document of every *.yaml file under the
// package's folder, and fails the test unless all of them decode.
func readManifests(t *testing.T) []manifest {
	t.Helper()
	var ms []manifest
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || filepath.Ext(path) != ".yaml" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		docs, err := splitDocuments(data)
		if err != nil {
			t.Errorf("%s: split into documents: %v", path, err)
			return nil
		}
		for i, doc := range docs {
			m := manifest{file: filepath.ToSlash(path), doc: i + 1}
			if m.obj, err = decodeStrict(doc); err != nil {
				t.Errorf("%s: %v", m, err)
				continue
			}
			ms = append(ms, m)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the manifests: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if len(ms) == 0 {
		t.Fatal("no manifest found under examples/kubernetes")
	}
	return ms
}

// all returns the objects of type T, in file order.
func all[T any](ms []manifest) []T {
	var out []T
	for _, m := range ms {
		if obj, ok := m.obj.(T); ok {
			out = append(out, obj)
		}
	}
	return out
}

// only returns the one object of type T, failing the test if there is not
// exactly one.
func only[T any](t *testing.T, ms []manifest) T {
	t.Helper()
	objs := all[T](ms)
	if len(objs) != 1 {
		var zero T
		t.Fatalf("want exactly one %T among the manifests, found %d", zero, len(objs))
	}
	return objs[0]
}

// podSpec is the Deployment's pod template.
func podSpec(t *testing.T, ms []manifest) *corev1.PodSpec {
	t.Helper()
	return &only[*appsv1.Deployment](t, ms).Spec.Template.Spec
}

// containerNamed returns the pod's container (or init container) called name.
func containerNamed(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	t.Fatalf("the Deployment has no container named %q", name)
	return nil
}

// everyContainer returns the init containers and the containers of the pod.
func everyContainer(spec *corev1.PodSpec) []corev1.Container {
	return slices.Concat(spec.InitContainers, spec.Containers)
}

// policyText is the policy file held by the phiguard-policy ConfigMap.
func policyText(t *testing.T, ms []manifest) string {
	t.Helper()
	for _, cm := range all[*corev1.ConfigMap](ms) {
		if text, ok := cm.Data[policyKey]; ok {
			return text
		}
	}
	t.Fatalf("no ConfigMap holds a %s key", policyKey)
	return ""
}

// loadPolicy runs the ConfigMap's policy through phiguard's own loader, as
// `phiguard serve` would read it from the mounted file. The example's policy
// must name the admin listener, keyring and JWKS the Deployment provides.
func loadPolicy(t *testing.T, ms []manifest) *policy.Policy {
	t.Helper()
	path := filepath.Join(t.TempDir(), policyKey)
	if err := os.WriteFile(path, []byte(policyText(t, ms)), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(path)
	if err != nil {
		t.Fatalf("the ConfigMap's policy does not load:\n%v", err)
	}
	if pol.File.Admin == nil || pol.File.Keys == nil || pol.File.Identity == nil || pol.File.Identity.JWT == nil {
		t.Fatal("the ConfigMap's policy must set admin.listen (probes, metrics), keys.keyring and identity.jwt.jwks (mounted by the Deployment)")
	}
	return pol
}

// listenPort returns the port of a host:port listen address.
func listenPort(t *testing.T, key, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("policy %s: %v", key, err)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		t.Fatalf("policy %s: port %q: %v", key, port, err)
	}
	return int32(n)
}

// resolvePort finds the container port a Service, probe or NetworkPolicy
// names, by name or by number.
func resolvePort(spec *corev1.PodSpec, p intstr.IntOrString) (container string, port corev1.ContainerPort, ok bool) {
	for _, c := range spec.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return c.Name, cp, true
			}
		}
	}
	return "", corev1.ContainerPort{}, false
}

// selects reports whether sel matches the Deployment's pod labels.
func selects(t *testing.T, sel *metav1.LabelSelector, ms []manifest) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("label selector %v: %v", sel, err)
	}
	pod := only[*appsv1.Deployment](t, ms).Spec.Template.Labels
	return !s.Empty() && s.Matches(labels.Set(pod))
}

func TestManifestsDecodeStrictly(t *testing.T) {
	ms := readManifests(t)
	for _, want := range []any{
		&corev1.Namespace{}, &corev1.ServiceAccount{}, &corev1.ConfigMap{}, &appsv1.Deployment{},
		&corev1.Service{}, &networkingv1.NetworkPolicy{}, &policyv1.PodDisruptionBudget{},
		&monitoringv1.PodMonitor{}, &monitoringv1.PrometheusRule{},
	} {
		if !slices.ContainsFunc(ms, func(m manifest) bool { return reflect.TypeOf(m.obj) == reflect.TypeOf(want) }) {
			t.Errorf("no manifest of type %T", want)
		}
	}
	for _, m := range ms {
		obj, ok := m.obj.(metav1.Object)
		if !ok {
			t.Fatalf("%s: %T has no object metadata", m, m.obj)
		}
		if _, isNS := m.obj.(*corev1.Namespace); isNS {
			if obj.GetName() != namespace {
				t.Errorf("%s: namespace is %q, want %q", m, obj.GetName(), namespace)
			}
			continue
		}
		if obj.GetNamespace() != namespace {
			t.Errorf("%s: %s is in namespace %q, want %q", m, obj.GetName(), obj.GetNamespace(), namespace)
		}
	}
}

func TestStrictDecodingRefusesMistakes(t *testing.T) {
	const deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
	cases := []struct {
		name, doc, wantErr string
	}{
		{
			name:    "misspelt field",
			doc:     deployment + "spec:\n  template:\n    spec:\n      containers:\n        - name: phiguard\n          readinesProbe: {httpGet: {path: /readyz, port: admin}}\n",
			wantErr: `unknown field "spec.template.spec.containers[0].readinesProbe"`,
		},
		{
			name:    "field in the wrong case",
			doc:     deployment + "spec:\n  template:\n    spec:\n      containers:\n        - name: phiguard\n          ReadinessProbe: {httpGet: {path: /readyz, port: admin}}\n",
			wantErr: `unknown field "spec.template.spec.containers[0].ReadinessProbe"`,
		},
		{
			name:    "duplicate key",
			doc:     deployment + "spec:\n  replicas: 2\n  replicas: 3\n",
			wantErr: `key "replicas" already set in map`,
		},
		{
			name:    "wrong type",
			doc:     deployment + "spec:\n  replicas: two\n",
			wantErr: "cannot unmarshal string",
		},
		{
			name:    "unknown kind",
			doc:     "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n",
			wantErr: `unknown apiVersion "apps/v1" kind "Deploymnet"`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(c.doc))
			if err == nil {
				t.Fatalf("decoded without error; want an error containing %q", c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("got error %q, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestSplitDocumentsKeepsEveryDocument(t *testing.T) {
	data := []byte("# comments only\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n")
	docs, err := splitDocuments(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want 2: %q", len(docs), docs)
	}
}

func TestPolicyLoads(t *testing.T) {
	loadPolicy(t, readManifests(t))
}

func TestServiceTargetsPhiguard(t *testing.T) {
	ms := readManifests(t)
	spec := podSpec(t, ms)
	svc := only[*corev1.Service](t, ms)
	if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, ms) {
		t.Errorf("Service %s selector %v does not match the Deployment's pods", svc.Name, svc.Spec.Selector)
	}
	http := listenPort(t, "ingress.listen", loadPolicy(t, ms).File.Ingress.Listen)
	for _, p := range svc.Spec.Ports {
		name, cp, ok := resolvePort(spec, p.TargetPort)
		switch {
		case !ok:
			t.Errorf("Service port %q targets %s, which no container declares", p.Name, p.TargetPort.String())
		case name != phiguardContainer:
			t.Errorf("Service port %q targets container %q; clients must reach %q, never the app directly", p.Name, name, phiguardContainer)
		case cp.ContainerPort != http:
			t.Errorf("Service port %q targets port %d, want phiguard's ingress port %d", p.Name, cp.ContainerPort, http)
		}
	}
}

func TestAppListensOnLoopbackOnly(t *testing.T) {
	ms := readManifests(t)
	app := containerNamed(t, podSpec(t, ms), appContainer)
	if len(app.Ports) > 0 {
		t.Errorf("container %q declares ports %v; the app must be reachable through phiguard only", app.Name, app.Ports)
	}
	i := slices.Index(app.Args, "-listen")
	if i < 0 || i+1 >= len(app.Args) {
		t.Fatalf("container %q args %q have no -listen ADDR", app.Name, app.Args)
	}
	listen := app.Args[i+1]
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("container %q -listen %q: %v", app.Name, listen, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		t.Errorf("container %q listens on %q; want a loopback address such as 127.0.0.1", app.Name, listen)
	}
	upstream := loadPolicy(t, ms).Upstream
	if want := (&url.URL{Scheme: "http", Host: listen}); upstream.Scheme != want.Scheme || upstream.Host != want.Host {
		t.Errorf("policy ingress.upstream is %s, want %s (where the app listens)", upstream, want)
	}
}

// TestAppCallsOutThroughEgress: the app's vendor calls go to phiguard's
// egress listener, which listens on the pod's loopback only (it holds the
// app's vendor credentials in flight) and has routes for the vendors.
func TestAppCallsOutThroughEgress(t *testing.T) {
	ms := readManifests(t)
	app := containerNamed(t, podSpec(t, ms), appContainer)
	pol := loadPolicy(t, ms)
	i := slices.Index(app.Args, "-egress")
	if i < 0 || i+1 >= len(app.Args) {
		t.Fatalf("container %q args %q have no -egress URL", app.Name, app.Args)
	}
	u, err := url.Parse(app.Args[i+1])
	if err != nil || u.Scheme != "http" || u.Host != pol.File.Egress.Listen {
		t.Errorf("the app calls out through %q; want http://%s (egress.listen)", app.Args[i+1], pol.File.Egress.Listen)
	}
	host, _, err := net.SplitHostPort(pol.File.Egress.Listen)
	if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || !ip.IsLoopback() {
		t.Errorf("egress.listen %q is not on the pod's loopback", pol.File.Egress.Listen)
	}
	if !pol.HasEgress() {
		t.Error("the policy lists no egress_routes: every vendor call would be refused")
	}
}

func TestContainersAreHardened(t *testing.T) {
	ms := readManifests(t)
	spec := podSpec(t, ms)
	if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the pod's securityContext must set runAsNonRoot: true and seccompProfile RuntimeDefault, got %+v", psc)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod must set automountServiceAccountToken: false; nothing in it calls the Kubernetes API")
	}
	for _, c := range everyContainer(spec) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %q has no securityContext", c.Name)
			continue
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("container %q: want runAsNonRoot: true", c.Name)
		}
		if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("container %q: want runAsUser set to a non-root id", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %q: want readOnlyRootFilesystem: true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %q: want allowPrivilegeEscalation: false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %q: must not be privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %q: want capabilities drop [ALL] and none added, got %+v", c.Name, sc.Capabilities)
		}
	}
}

func TestSecretsAreMountedReadOnly(t *testing.T) {
	ms := readManifests(t)
	spec := podSpec(t, ms)
	secretVolumes := map[string]bool{}
	for _, v := range spec.Volumes {
		var mode *int32
		switch {
		case v.Secret != nil:
			mode = v.Secret.DefaultMode
		case v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.Secret != nil }):
			mode = v.Projected.DefaultMode
		default:
			continue
		}
		secretVolumes[v.Name] = true
		if mode == nil || *mode&0o227 != 0 {
			t.Errorf("secret volume %q: want defaultMode 0400 or 0440 (no write, nothing for others), got %s", v.Name, octal(mode))
		}
	}
	for _, c := range everyContainer(spec) {
		for _, m := range c.VolumeMounts {
			if secretVolumes[m.Name] && !m.ReadOnly {
				t.Errorf("container %q mounts secret volume %q at %s without readOnly: true", c.Name, m.Name, m.MountPath)
			}
		}
	}
}

func octal(mode *int32) string {
	if mode == nil {
		return "no defaultMode (0644)"
	}
	return fmt.Sprintf("%#o", *mode)
}

// mountFor returns the container's mount whose folder holds path: the
// deepest, when mounts nest.
func mountFor(c *corev1.Container, path string) (mount corev1.VolumeMount, ok bool) {
	for _, m := range c.VolumeMounts {
		inside := path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if inside && len(m.MountPath) > len(mount.MountPath) {
			mount, ok = m, true
		}
	}
	return mount, ok
}

func volumeNamed(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func TestPhiguardFindsItsFiles(t *testing.T) {
	ms := readManifests(t)
	spec := podSpec(t, ms)
	pg := containerNamed(t, spec, phiguardContainer)
	pol := loadPolicy(t, ms)

	i := slices.Index(pg.Args, "-config")
	if len(pg.Args) == 0 || pg.Args[0] != "serve" || i < 0 || i+1 >= len(pg.Args) {
		t.Fatalf("container %q args %q: want serve -config FILE", pg.Name, pg.Args)
	}
	config := pg.Args[i+1]
	m, ok := mountFor(pg, config)
	if !ok {
		t.Fatalf("-config %s is in no volume mounted into %q", config, pg.Name)
	}
	if m.SubPath != "" || m.SubPathExpr != "" {
		t.Errorf("the policy is mounted with subPath %q; a subPath mount never sees ConfigMap updates, so hot reload would not work", m.SubPath+m.SubPathExpr)
	}
	if v := volumeNamed(spec, m.Name); v == nil || v.ConfigMap == nil {
		t.Errorf("-config %s is not on a ConfigMap volume", config)
	} else if len(v.ConfigMap.Items) > 0 || filepath.Base(config) != policyKey {
		t.Errorf("-config %s: want the ConfigMap's key %s, mounted without items", config, policyKey)
	}

	// The keysets are read from KEYRING/orgs: that folder must be a Secret
	// volume, mounted whole, so that an updated Secret reaches running pods.
	orgs := filepath.Join(pol.File.Keys.Keyring, "orgs")
	for _, f := range []struct{ key, path string }{
		{"keys.keyring (orgs/)", orgs},
		{"identity.jwt.jwks", pol.File.Identity.JWT.JWKS},
	} {
		m, ok := mountFor(pg, f.path)
		if !ok {
			t.Errorf("policy %s %s is in no volume mounted into %q", f.key, f.path, pg.Name)
			continue
		}
		if !m.ReadOnly {
			t.Errorf("policy %s %s: volume %q is mounted writable; want readOnly: true", f.key, f.path, m.Name)
		}
	}
	if m, ok := mountFor(pg, orgs); ok {
		v := volumeNamed(spec, m.Name)
		switch {
		case v == nil || v.Secret == nil:
			t.Errorf("the keysets %s: volume %q is not a Secret", orgs, m.Name)
		case m.MountPath != orgs || m.SubPath != "" || len(v.Secret.Items) > 0:
			t.Errorf("the keysets: Secret %q mounted at %s (subPath %q, %d items); want the whole Secret at %s, or an updated Secret never reaches the pod", v.Secret.SecretName, m.MountPath, m.SubPath, len(v.Secret.Items), orgs)
		}
	}
	// The local master key comes from a Secret through the environment:
	// never from a file on the node's disk, nor one its group may read.
	if pol.File.Keys.Provider == policy.ProviderLocal {
		var ref *corev1.SecretKeySelector
		for _, e := range pg.Env {
			if e.Name == "PHIGUARD_MASTER_KEY" && e.ValueFrom != nil {
				ref = e.ValueFrom.SecretKeyRef
			}
		}
		if ref == nil || ref.Name == "" || ref.Key == "" {
			t.Errorf("container %q: the local master key must be PHIGUARD_MASTER_KEY from a secretKeyRef", pg.Name)
		} else if m, ok := mountFor(pg, orgs); ok && volumeNamed(spec, m.Name) != nil && volumeNamed(spec, m.Name).Secret != nil && volumeNamed(spec, m.Name).Secret.SecretName == ref.Name {
			t.Errorf("the master key's Secret %q is also the keysets' Secret: a copy of one must not open the other", ref.Name)
		}
	}
}

func TestProbesUseAdminPort(t *testing.T) {
	ms := readManifests(t)
	spec := podSpec(t, ms)
	pg := containerNamed(t, spec, phiguardContainer)
	pol := loadPolicy(t, ms)
	admin := listenPort(t, "admin.listen", pol.File.Admin.Listen)
	if host, _, _ := net.SplitHostPort(pol.File.Admin.Listen); host == "" || host == "localhost" || strings.HasPrefix(host, "127.") {
		t.Errorf("admin.listen %q: the kubelet probes from the node, so listen on the pod IP (0.0.0.0)", pol.File.Admin.Listen)
	}
	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{
		{"livenessProbe", "/healthz", pg.LivenessProbe},
		{"readinessProbe", "/readyz", pg.ReadinessProbe},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("container %q: want an httpGet %s", pg.Name, p.kind)
			continue
		}
		get := p.probe.HTTPGet
		if get.Path != p.path {
			t.Errorf("container %q %s: path %q, want %q", pg.Name, p.kind, get.Path, p.path)
		}
		name, cp, ok := resolvePort(spec, get.Port)
		if !ok || name != phiguardContainer || cp.Name != adminPortName || cp.ContainerPort != admin {
			t.Errorf("container %q %s: port %s, want phiguard's %q port %d (admin.listen)", pg.Name, p.kind, get.Port.String(), adminPortName, admin)
		}
	}
	http := listenPort(t, "ingress.listen", pol.File.Ingress.Listen)
	if _, cp, ok := resolvePort(spec, intstr.FromString("http")); !ok || cp.ContainerPort != http {
		t.Errorf("container %q: want a port named http with containerPort %d (ingress.listen)", pg.Name, http)
	}
}

func TestShutdownFitsGracePeriod(t *testing.T) {
	ms := readManifests(t)
	spec := podSpec(t, ms)
	in := loadPolicy(t, ms).File.Ingress
	drain := in.DrainDelay + in.DrainTimeout
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("the pod must set terminationGracePeriodSeconds")
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= drain {
		t.Errorf("terminationGracePeriodSeconds is %s; want more than drain_delay + drain_timeout (%s), or in-flight requests are killed", grace, drain)
	}
	app := containerNamed(t, spec, appContainer)
	if app.Lifecycle == nil || app.Lifecycle.PreStop == nil || app.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("container %q: want a preStop sleep, so the app outlives phiguard's drain", app.Name)
	}
	sleep := time.Duration(app.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if sleep < drain || sleep >= grace {
		t.Errorf("container %q preStop sleeps %s; want at least drain_delay + drain_timeout (%s) and less than the grace period (%s)", app.Name, sleep, drain, grace)
	}
}

// goMemLimit parses a GOMEMLIMIT value: bytes with an optional B, KiB, MiB,
// GiB or TiB suffix.
func goMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		size   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.size, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func TestResourcesAreSet(t *testing.T) {
	ms := readManifests(t)
	spec := podSpec(t, ms)
	for _, c := range everyContainer(spec) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			limit, hasLimit := c.Resources.Limits[r]
			if !hasReq || !hasLimit {
				t.Errorf("container %q: want both a request and a limit for %s", c.Name, r)
			} else if req.Cmp(limit) > 0 {
				t.Errorf("container %q: %s request %s exceeds its limit %s", c.Name, r, req.String(), limit.String())
			}
		}
	}

	pg := containerNamed(t, spec, phiguardContainer)
	in := loadPolicy(t, ms).File.Ingress
	bodies := int64(in.MaxConcurrentRequests) * 2 * (in.MaxBodyBytes + in.MaxResponseBytes)
	limit := pg.Resources.Limits[corev1.ResourceMemory]
	i := slices.IndexFunc(pg.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
	if i < 0 {
		t.Fatalf("container %q: want GOMEMLIMIT set below its memory limit", pg.Name)
	}
	soft, err := goMemLimit(pg.Env[i].Value)
	if err != nil {
		t.Fatalf("container %q GOMEMLIMIT %q: %v", pg.Name, pg.Env[i].Value, err)
	}
	if !(bodies < soft && soft < limit.Value()) {
		t.Errorf("container %q: want body memory (max_concurrent_requests × 2 × (max_body_bytes + max_response_bytes) = %d MiB) < GOMEMLIMIT (%d MiB) < memory limit (%d MiB)",
			pg.Name, bodies>>20, soft>>20, limit.Value()>>20)
	}
}

func TestServiceAccountForKMS(t *testing.T) {
	ms := readManifests(t)
	sa := only[*corev1.ServiceAccount](t, ms)
	if arn := sa.Annotations[serviceAccountIRSA]; !strings.HasPrefix(arn, "arn:aws:iam::") {
		t.Errorf("ServiceAccount %s: annotation %s is %q, want an IAM role ARN", sa.Name, serviceAccountIRSA, arn)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s: want automountServiceAccountToken: false", sa.Name)
	}
	d := only[*appsv1.Deployment](t, ms)
	if d.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("the Deployment runs as ServiceAccount %q, want %q", d.Spec.Template.Spec.ServiceAccountName, sa.Name)
	}
	// Only phiguard may receive the role's credentials.
	skipped := strings.Split(d.Spec.Template.Annotations[irsaSkipContainers], ",")
	for _, c := range everyContainer(&d.Spec.Template.Spec) {
		if skip := slices.Contains(skipped, c.Name); skip == (c.Name == phiguardContainer) {
			t.Errorf("pod annotation %s is %q: want every container but %q listed", irsaSkipContainers, d.Spec.Template.Annotations[irsaSkipContainers], phiguardContainer)
			break
		}
	}
}

func TestDisruptionBudget(t *testing.T) {
	ms := readManifests(t)
	d := only[*appsv1.Deployment](t, ms)
	pdb := only[*policyv1.PodDisruptionBudget](t, ms)
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("the Deployment must run at least 2 replicas, got %v", d.Spec.Replicas)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.String() != "1" {
		t.Errorf("PodDisruptionBudget %s: want minAvailable 1, got %v", pdb.Name, pdb.Spec.MinAvailable)
	}
	if !selects(t, pdb.Spec.Selector, ms) {
		t.Errorf("PodDisruptionBudget %s does not select the Deployment's pods", pdb.Name)
	}
}

func TestNetworkPolicy(t *testing.T) {
	ms := readManifests(t)
	spec := podSpec(t, ms)
	np := only[*networkingv1.NetworkPolicy](t, ms)
	if !selects(t, &np.Spec.PodSelector, ms) {
		t.Fatalf("NetworkPolicy %s does not select the Deployment's pods", np.Name)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("NetworkPolicy %s: want policyTypes Ingress and Egress, got %v", np.Name, np.Spec.PolicyTypes)
	}
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy %s ingress[%d] opens every port; name the ports", np.Name, i)
		}
		for _, p := range rule.Ports {
			if p.Port == nil {
				t.Errorf("NetworkPolicy %s ingress[%d] opens every port; name the ports", np.Name, i)
				continue
			}
			name, cp, ok := resolvePort(spec, *p.Port)
			switch {
			case !ok || name != phiguardContainer:
				t.Errorf("NetworkPolicy %s ingress[%d] opens port %s; only phiguard's ports may be reached", np.Name, i, p.Port.String())
			case cp.Name == adminPortName && !onlyFromMonitoring(rule.From):
				t.Errorf("NetworkPolicy %s ingress[%d] opens the admin port to more than the namespace labelled %s: %s", np.Name, i, monitoringNSLabel, monitoringNS)
			}
		}
	}
	allowed := []string{"UDP/53", "TCP/53", "TCP/443"}
	for i, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy %s egress[%d] allows every port; want only %v", np.Name, i, allowed)
		}
		for _, p := range rule.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if got := fmt.Sprintf("%s/%s", proto, p.Port.String()); p.Port == nil || !slices.Contains(allowed, got) {
				t.Errorf("NetworkPolicy %s egress[%d] allows %s; want only %v (DNS and AWS KMS)", np.Name, i, got, allowed)
			}
		}
	}
}

// onlyFromMonitoring reports whether peers admit the monitoring namespace's
// pods and nothing else.
func onlyFromMonitoring(peers []networkingv1.NetworkPolicyPeer) bool {
	if len(peers) == 0 {
		return false
	}
	for _, p := range peers {
		ns := p.NamespaceSelector
		if p.IPBlock != nil || ns == nil || len(ns.MatchExpressions) > 0 || len(ns.MatchLabels) != 1 || ns.MatchLabels[monitoringNSLabel] != monitoringNS {
			return false
		}
	}
	return true
}

func TestPodMonitorScrapesAdminPort(t *testing.T) {
	ms := readManifests(t)
	pm := only[*monitoringv1.PodMonitor](t, ms)
	if !selects(t, &pm.Spec.Selector, ms) {
		t.Errorf("PodMonitor %s does not select the Deployment's pods", pm.Name)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor %s: want one endpoint, got %d", pm.Name, len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port == nil || *ep.Port != adminPortName || ep.Path != "/metrics" {
		t.Errorf("PodMonitor %s scrapes port %v path %q, want port %q path /metrics", pm.Name, ep.Port, ep.Path, adminPortName)
	}
}

// alertRules returns every alerting rule of the PrometheusRule.
func alertRules(t *testing.T, ms []manifest) []monitoringv1.Rule {
	t.Helper()
	var rules []monitoringv1.Rule
	for _, g := range only[*monitoringv1.PrometheusRule](t, ms).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				rules = append(rules, r)
			}
		}
	}
	return rules
}

var metricName = regexp.MustCompile(`\bphiguard_[a-z0-9_]+`)

// registeredMetrics is the set of series names phiguard exports.
func registeredMetrics() map[string]bool {
	set := map[string]bool{}
	for _, n := range metrics.Names() {
		set[n] = true
	}
	return set
}

// family returns the metric a series name belongs to: a histogram's
// _bucket, _sum and _count series belong to the histogram.
func family(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return base
		}
	}
	return name
}

func TestAlertsUseRegisteredMetrics(t *testing.T) {
	ms := readManifests(t)
	set := registeredMetrics()
	for _, r := range alertRules(t, ms) {
		names := metricName.FindAllString(r.Expr.String(), -1)
		if len(names) == 0 {
			t.Errorf("alert %s uses no phiguard metric: %s", r.Alert, r.Expr.String())
		}
		for _, n := range names {
			if !set[n] {
				t.Errorf("alert %s uses %s, which phiguard does not register (metrics.Names)", r.Alert, n)
			}
		}
	}
}

func TestAlertsAreComplete(t *testing.T) {
	ms := readManifests(t)
	want := []string{
		"PhiguardAuditSinkFailing", "PhiguardPolicyReloadFailing", "PhiguardRestartRequired",
		"PhiguardRefusalSpike", "PhiguardDecryptSpike", "PhiguardCoverageBelow100",
		"PhiguardNotReady", "PhiguardSaturated",
	}
	rules := alertRules(t, ms)
	for _, name := range want {
		if !slices.ContainsFunc(rules, func(r monitoringv1.Rule) bool { return r.Alert == name }) {
			t.Errorf("the PrometheusRule has no alert %s", name)
		}
	}
	for _, r := range rules {
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("alert %s: severity label %q, want critical or warning", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s annotation", r.Alert, a)
			}
		}
	}
}

func readDoc(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(deployingDoc)
	if err != nil {
		t.Fatalf("read the deployment guide: %v", err)
	}
	return string(data)
}

func TestDocsFollowTheManifests(t *testing.T) {
	ms := readManifests(t)
	doc := readDoc(t)
	files := map[string]bool{}
	for _, m := range ms {
		files[m.file] = true
	}
	for f := range files {
		if !strings.Contains(doc, f) {
			t.Errorf("%s does not mention manifest %s", deployingDoc, f)
		}
	}
	for _, v := range podSpec(t, ms).Volumes {
		if v.Secret == nil {
			continue
		}
		if want := "kubectl -n " + namespace + " create secret generic " + v.Secret.SecretName + " "; !strings.Contains(doc, want) {
			t.Errorf("%s does not show how to create Secret %s (want a line with %q)", deployingDoc, v.Secret.SecretName, want)
		}
	}
	for _, r := range alertRules(t, ms) {
		if !strings.Contains(doc, r.Alert) {
			t.Errorf("%s does not explain alert %s", deployingDoc, r.Alert)
		}
	}
	for n := range registeredMetrics() {
		if f := family(n); strings.HasPrefix(f, "phiguard_") && !strings.Contains(doc, f) {
			t.Errorf("%s does not list metric %s", deployingDoc, f)
		}
	}
}
