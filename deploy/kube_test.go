package deploy

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const manifest = "kube-vxland.yml"

// kubeObjects is what kube-vxland.yml holds, decoded.
type kubeObjects struct {
	namespace      *corev1.Namespace
	serviceAccount *corev1.ServiceAccount
	configMap      *corev1.ConfigMap
	daemonSet      *appsv1.DaemonSet
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// The kinds kube-vxland.yml holds, one of each, by apiVersion and kind.
const (
	kindNamespace      = "v1 Namespace"
	kindServiceAccount = "v1 ServiceAccount"
	kindConfigMap      = "v1 ConfigMap"
	kindDaemonSet      = "apps/v1 DaemonSet"
)

// decodeManifest decodes every document of a manifest strictly into its
// Kubernetes API type: an unknown field, a duplicate key, a value of the
// wrong type, a kind this test does not know or a missing one fails.
func decodeManifest(t *testing.T, data []byte) kubeObjects {
	t.Helper()
	docs := map[string]string{}
	for i, doc := range docSeparator.Split(string(data), -1) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if tm.Kind == "" && tm.APIVersion == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				t.Fatalf("document %d has no kind:\n%s", i, doc)
			}
			continue
		}
		kind := tm.APIVersion + " " + tm.Kind
		switch _, dup := docs[kind]; {
		case dup:
			t.Fatalf("two %s in %s", kind, manifest)
		case !slices.Contains([]string{kindNamespace, kindServiceAccount, kindConfigMap, kindDaemonSet}, kind):
			t.Fatalf("document %d: %s is not expected in %s", i, kind, manifest)
		}
		docs[kind] = doc
	}
	return kubeObjects{
		namespace:      decodeStrict[corev1.Namespace](t, kindNamespace, docs),
		serviceAccount: decodeStrict[corev1.ServiceAccount](t, kindServiceAccount, docs),
		configMap:      decodeStrict[corev1.ConfigMap](t, kindConfigMap, docs),
		daemonSet:      decodeStrict[appsv1.DaemonSet](t, kindDaemonSet, docs),
	}
}

// decodeStrict decodes the document of kind into a T.
func decodeStrict[T any](t *testing.T, kind string, docs map[string]string) *T {
	t.Helper()
	doc, ok := docs[kind]
	if !ok {
		t.Fatalf("%s has no %s", manifest, kind)
	}
	obj := new(T)
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return obj
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func readManifest(t *testing.T) kubeObjects {
	t.Helper()
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifest(t, data)
}

// TestManifestStrict checks that the strict decoding refuses what a
// typo makes: a field the API does not have.
func TestManifestStrict(t *testing.T) {
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	readManifest(t)
	bad := bytes.Replace(data, []byte("hostNetwork: true"), []byte("hostNetwork: true\n      hostNetworking: true"), 1)
	var ds appsv1.DaemonSet
	for _, doc := range docSeparator.Split(string(bad), -1) {
		if strings.Contains(doc, "kind: DaemonSet") {
			if err := yaml.UnmarshalStrict([]byte(doc), &ds); err == nil {
				t.Fatal("a DaemonSet with the unknown field hostNetworking decoded without error")
			}
			return
		}
	}
	t.Fatal("no DaemonSet document")
}

func TestManifestNamespace(t *testing.T) {
	objs := readManifest(t)
	ns := objs.namespace.Name
	if got := objs.namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace %s: pod-security enforce %q: only privileged admits hostNetwork and hostPath", ns, got)
	}
	for kind, m := range map[string]metav1.ObjectMeta{"ServiceAccount": objs.serviceAccount.ObjectMeta,
		"ConfigMap": objs.configMap.ObjectMeta, "DaemonSet": objs.daemonSet.ObjectMeta} {
		if m.Namespace != ns {
			t.Errorf("%s %s is in namespace %q, not %q", kind, m.Name, m.Namespace, ns)
		}
	}
	if sa := objs.daemonSet.Spec.Template.Spec.ServiceAccountName; sa != objs.serviceAccount.Name {
		t.Errorf("the DaemonSet runs as %q, the ServiceAccount is %q", sa, objs.serviceAccount.Name)
	}
}

// TestManifestCNIConfig checks the conflist against kube-flannel's:
// flannel delegating with hairpin mode and the default gateway, then
// portmap with port mappings.
func TestManifestCNIConfig(t *testing.T) {
	cm := readManifest(t).configMap
	type plugin struct {
		Type     string `json:"type"`
		Delegate *struct {
			HairpinMode      bool `json:"hairpinMode"`
			IsDefaultGateway bool `json:"isDefaultGateway"`
		} `json:"delegate,omitempty"`
		Capabilities map[string]bool `json:"capabilities,omitempty"`
	}
	var conf struct {
		Name       string   `json:"name"`
		CNIVersion string   `json:"cniVersion"`
		Plugins    []plugin `json:"plugins"`
	}
	decodeJSONStrict(t, cm.Data["cni-conf.json"], &conf)
	if conf.CNIVersion != "0.3.1" || conf.Name != "cbr0" {
		t.Errorf("cniVersion %q, name %q; kube-flannel's are 0.3.1 and cbr0", conf.CNIVersion, conf.Name)
	}
	if len(conf.Plugins) != 2 {
		t.Fatalf("plugins %+v, want flannel and portmap", conf.Plugins)
	}
	if p := conf.Plugins[0]; p.Type != "flannel" || p.Delegate == nil || !p.Delegate.HairpinMode || !p.Delegate.IsDefaultGateway {
		t.Errorf("first plugin %+v, want flannel with delegate hairpinMode and isDefaultGateway", p)
	}
	if p := conf.Plugins[1]; p.Type != "portmap" || !p.Capabilities["portMappings"] {
		t.Errorf("second plugin %+v, want portmap with capabilities portMappings", p)
	}
}

// TestManifestNetConf checks that net-conf.json is a network config that
// vxland's flannel mode takes: a vxlan backend and an IPv4 network.
func TestManifestNetConf(t *testing.T) {
	cm := readManifest(t).configMap
	var conf struct {
		Network   string
		SubnetLen int `json:",omitempty"`
		Backend   struct {
			Type string
			VNI  uint32 `json:",omitempty"`
			Port uint16 `json:",omitempty"`
		}
	}
	decodeJSONStrict(t, cm.Data["net-conf.json"], &conf)
	if p, err := netip.ParsePrefix(conf.Network); err != nil || !p.Addr().Is4() {
		t.Errorf("Network %q is not an IPv4 prefix", conf.Network)
	}
	if conf.Backend.Type != "vxlan" {
		t.Errorf("Backend.Type %q: vxland speaks vxlan only", conf.Backend.Type)
	}
}

func decodeJSONStrict(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v in:\n%s", err, s)
	}
}

// TestManifestDaemonSet checks what vxland needs from its pod and what
// keeps the cluster's network up while it is replaced.
func TestManifestDaemonSet(t *testing.T) {
	ds := readManifest(t).daemonSet
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("hostNetwork is off: vxland's TAP, routes and UDP port belong to the node")
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	for _, effect := range []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute} {
		if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
			return tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == effect
		}) {
			t.Errorf("no toleration of every %s taint (operator Exists, no key)", effect)
		}
	}
	us := ds.Spec.UpdateStrategy
	if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil ||
		us.RollingUpdate.MaxUnavailable == nil || us.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("updateStrategy %+v, want RollingUpdate with maxUnavailable 1", us)
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("selector %v: %v", ds.Spec.Selector, err)
	}
	if !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("selector %s does not match the template's labels %v", sel, ds.Spec.Template.Labels)
	}

	c := vxlandContainer(t, ds)
	caps := c.SecurityContext.Capabilities
	if caps == nil || !slices.Equal(caps.Add, []corev1.Capability{"NET_ADMIN"}) || !slices.Equal(caps.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities %+v, want all dropped but NET_ADMIN", caps)
	}
	if p := c.SecurityContext.Privileged; p != nil && *p {
		t.Error("the container is privileged: NET_ADMIN is all vxland needs")
	}
	tun := hostPathAt(t, spec, c, "/dev/net/tun")
	if tun == nil || tun.Path != "/dev/net/tun" || tun.Type == nil || *tun.Type != corev1.HostPathCharDev {
		t.Errorf("/dev/net/tun is not the node's character device: %+v", tun)
	}
	if hp := hostPathAt(t, spec, c, "/run/vxland"); hp == nil || hp.Path != "/run/vxland" {
		t.Errorf("/run/vxland (the control socket) is not the node's: %+v", hp)
	}
}

// TestManifestVxlandArgs runs the built vxland with the DaemonSet's
// arguments and checks that each flag exists and its value parses, that
// the environment names vxland's flags, and that the files and ports the
// flags name are the ones the pod mounts and probes.
func TestManifestVxlandArgs(t *testing.T) {
	vxland := vxlandBinary(t)
	ds := readManifest(t).daemonSet
	spec := ds.Spec.Template.Spec
	c := vxlandContainer(t, ds)
	if len(c.Command) != 0 {
		t.Errorf("command %q: the image's entrypoint is vxland", c.Command)
	}
	checkArgs(t, vxland, c.Args)
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	checkEnvNames(t, vxlandFlags(t, vxland), names)

	flags := map[string]string{}
	for _, a := range c.Args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("argument %q: write flags as --flag=value, so that this test can read them", a)
		}
		flags[name] = value
	}
	if flags["mode"] != "flannel" {
		t.Errorf("--mode=%q, want flannel", flags["mode"])
	}
	endpoints := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "VXLAND_ETCD_ENDPOINTS" })
	if endpoints < 0 || c.Env[endpoints].ValueFrom == nil || c.Env[endpoints].ValueFrom.SecretKeyRef == nil {
		t.Fatal("VXLAND_ETCD_ENDPOINTS does not come from a Secret")
	}
	secretName := c.Env[endpoints].ValueFrom.SecretKeyRef.Name

	// Each TLS file is an item of the same Secret, mounted where the flag
	// points.
	for _, f := range []string{"etcd-cafile", "etcd-certfile", "etcd-keyfile"} {
		p := flags[f]
		if p == "" {
			t.Errorf("no --%s: etcd is reached over TLS", f)
			continue
		}
		v, m := volumeAt(t, spec, c, path.Dir(p))
		if v == nil || v.Secret == nil || v.Secret.SecretName != secretName || !m.ReadOnly {
			t.Errorf("--%s=%s: %s is not the Secret %s mounted read-only", f, p, path.Dir(p), secretName)
			continue
		}
		if !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == path.Base(p) }) {
			t.Errorf("--%s=%s: the Secret's items %v have no %s", f, p, v.Secret.Items, path.Base(p))
		}
		if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
			t.Errorf("the Secret's files are not mode 0400")
		}
	}

	// subnet.env lands in the node's /run/flannel, where the CNI plugin
	// reads it.
	subnetFile := cmp.Or(flags["subnet-file"], "/run/flannel/subnet.env")
	if hp := hostPathAt(t, spec, c, path.Dir(subnetFile)); hp == nil || hp.Path != "/run/flannel" {
		t.Errorf("%s is not in the node's /run/flannel: %+v", subnetFile, hp)
	}

	// The probes ask --healthz-listen.
	host, port, err := net.SplitHostPort(flags["healthz-listen"])
	if err != nil {
		t.Fatalf("--healthz-listen=%q: %v", flags["healthz-listen"], err)
	}
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Port.String() != port || g.Host != host {
			t.Errorf("%s asks %s:%s%s, want %s:%s%s (--healthz-listen)", p.name, g.Host, g.Port.String(), g.Path, host, port, p.path)
		}
	}
}

// TestManifestInstallsCNI checks the init containers: the conflist from
// the ConfigMap goes to the node's /etc/cni/net.d under kube-flannel's
// name, and the flannel plugin to the node's /opt/cni/bin.
func TestManifestInstallsCNI(t *testing.T) {
	objs := readManifest(t)
	spec := objs.daemonSet.Spec.Template.Spec
	copies := map[string]string{} // destination on the node: source
	for _, ic := range spec.InitContainers {
		cmd := append(append([]string{}, ic.Command...), ic.Args...)
		if len(cmd) != 4 || cmd[0] != "cp" || cmd[1] != "-f" {
			t.Fatalf("init container %s runs %q, want cp -f SRC DST", ic.Name, cmd)
		}
		hp := hostPathAt(t, spec, &ic, path.Dir(cmd[3]))
		if hp == nil {
			t.Fatalf("init container %s copies to %s, which is not on the node", ic.Name, cmd[3])
		}
		src := cmd[2]
		if v, _ := volumeAt(t, spec, &ic, path.Dir(src)); v != nil && v.ConfigMap != nil {
			if v.ConfigMap.Name != objs.configMap.Name {
				t.Errorf("init container %s copies from ConfigMap %s", ic.Name, v.ConfigMap.Name)
			}
			src = "configmap:" + path.Base(src)
		}
		copies[path.Join(hp.Path, path.Base(cmd[3]))] = src
	}
	want := map[string]string{
		"/etc/cni/net.d/10-flannel.conflist": "configmap:cni-conf.json",
		"/opt/cni/bin/flannel":               "/flannel",
	}
	for dst, src := range want {
		if copies[dst] != src {
			t.Errorf("%s on the node comes from %q, want %q", dst, copies[dst], src)
		}
	}
}

func vxlandContainer(t *testing.T, ds *appsv1.DaemonSet) *corev1.Container {
	t.Helper()
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want vxland alone", len(cs))
	}
	if cs[0].SecurityContext == nil {
		t.Fatal("the vxland container has no securityContext")
	}
	return &cs[0]
}

// volumeAt returns the volume that container c mounts at dir, and the
// mount.
func volumeAt(t *testing.T, spec corev1.PodSpec, c *corev1.Container, dir string) (*corev1.Volume, *corev1.VolumeMount) {
	t.Helper()
	for i, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for j, v := range spec.Volumes {
			if v.Name == m.Name {
				return &spec.Volumes[j], &c.VolumeMounts[i]
			}
		}
		t.Fatalf("mount %s names no volume %q", m.MountPath, m.Name)
	}
	return nil, nil
}

// hostPathAt returns the node's path that container c sees at dir, or nil.
func hostPathAt(t *testing.T, spec corev1.PodSpec, c *corev1.Container, dir string) *corev1.HostPathVolumeSource {
	t.Helper()
	if v, _ := volumeAt(t, spec, c, dir); v != nil {
		return v.HostPath
	}
	return nil
}
