package deploy

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/credbroker/credbroker/test/harness"
)

// helmVersion is the helm the Makefile pins (HELM_VERSION); the test checks
// that both agree and that .bin/helm is that version.
const helmVersion = "v4.3.2"

// chartNamespace and releaseName are what the chart is rendered with.
const (
	chartNamespace = "credbroker"
	releaseName    = "credbroker"
)

// kubeVersion is the cluster version the chart is rendered for (the chart
// wants 1.29 or later: native sidecars, the example's agent).
const kubeVersion = "1.33.0"

// helmBinary returns .bin/helm, checked to be the pinned version. It skips
// the test when helm is not built, unless CREDBROKER_REQUIRE_SERVICES=1
// (make test builds it first).
func helmBinary(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	bin := filepath.Join(root, ".bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		if requireServices() {
			t.Fatalf("%s is missing: run `make test` (it builds helm %s into .bin/) or `make helm`", bin, helmVersion)
		}
		t.Skipf("%s is missing (`make helm` builds it); the chart is not rendered", bin)
	}
	// go install does not stamp helm's own version (it says v4.3); the
	// module version in the binary's build info is the pin.
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	if info.Main.Path != "helm.sh/helm/v4" || info.Main.Version != helmVersion {
		t.Fatalf("%s is %s %s, want helm.sh/helm/v4 %s: remove it and run `make helm`", bin, info.Main.Path, info.Main.Version, helmVersion)
	}
	return bin
}

func TestHelmVersionPinnedInMakefile(t *testing.T) {
	makefile, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^HELM_VERSION\s*:=\s*(\S+)\s*$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("the Makefile has no HELM_VERSION := line")
	}
	if string(m[1]) != helmVersion {
		t.Fatalf("Makefile pins helm %s, the test expects %s: change both together", m[1], helmVersion)
	}
}

// chartDir is the chart's directory.
func chartDir(t *testing.T) string { return filepath.Join(repoRoot(t), "deploy", "helm", "credbroker") }

// render runs helm template on the chart with the values files and --set
// arguments given, and returns the manifest, or helm's error output.
func render(t *testing.T, valuesFiles []string, sets ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", releaseName, chartDir(t), "--namespace", chartNamespace, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

func mustRender(t *testing.T, valuesFiles []string, sets ...string) *objects {
	t.Helper()
	manifest, err := render(t, valuesFiles, sets...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifest(t, manifest)
}

// chartWant is what a values file must render to.
type chartWant struct {
	replicas       int32
	minAvailable   int
	automountToken bool
	tlsSecret      string
	clientCASecret string // "": no mTLS
	// readinessHTTPS: the readiness probe GETs /readyz over TLS;
	// otherwise (mTLS required of every caller) it is a TCP check.
	readinessHTTPS     bool
	metrics            bool
	serviceMonitor     bool
	certificate        bool
	clusterRoleBinding bool
	networkPolicy      bool
	// secretEnv are the container's variables, each from a key of a Secret:
	// name → "secret/key".
	secretEnv map[string]string
	// secretFiles are the Secrets the config's files come from: path in the
	// container → "secret/key".
	secretFiles map[string]string
}

// chartCases are the values files of ci/, each with what it must render.
// Every file in ci/ must have a case.
var chartCases = map[string]chartWant{
	"defaults-values.yaml": {
		replicas: 2, minAvailable: 1, tlsSecret: "credbroker-tls", readinessHTTPS: true, metrics: true,
		secretEnv: map[string]string{"CREDBROKER_DATABASE_URL": "credbroker-database/dsn"},
		secretFiles: map[string]string{
			"/etc/credbroker/tls/tls.crt": "credbroker-tls/tls.crt",
			"/etc/credbroker/tls/tls.key": "credbroker-tls/tls.key",
		},
	},
	"tls-from-secret-values.yaml": {
		replicas: 2, minAvailable: 1, tlsSecret: "credbroker-server-tls", clientCASecret: "credbroker-client-ca",
		metrics: true, networkPolicy: true,
		secretEnv: map[string]string{
			"CREDBROKER_DATABASE_URL": "store-dsn/url",
			"ORDERS_PG_ADMIN_DSN":     "orders-pg-admin/dsn",
		},
		secretFiles: map[string]string{
			"/etc/credbroker/tls/tls.crt":            "credbroker-server-tls/tls.crt",
			"/etc/credbroker/tls/tls.key":            "credbroker-server-tls/tls.key",
			"/etc/credbroker/client-ca/ca.pem":       "credbroker-client-ca/ca.pem",
			"/etc/credbroker/secrets/corp-ca/ca.pem": "corp-ca/ca.crt",
		},
	},
	"cert-manager-values.yaml": {
		replicas: 3, minAvailable: 2, tlsSecret: "credbroker-tls", readinessHTTPS: true, metrics: true, certificate: true,
		secretEnv: map[string]string{"CREDBROKER_DATABASE_URL": "credbroker-database/dsn"},
		secretFiles: map[string]string{
			"/etc/credbroker/tls/tls.crt": "credbroker-tls/tls.crt",
			"/etc/credbroker/tls/tls.key": "credbroker-tls/tls.key",
		},
	},
	"kubernetes-issuer-values.yaml": {
		replicas: 2, minAvailable: 1, automountToken: true, tlsSecret: "credbroker-tls", readinessHTTPS: true,
		metrics: true, clusterRoleBinding: true,
		secretEnv: map[string]string{
			"CREDBROKER_DATABASE_URL": "credbroker-database/dsn",
			"ORDERS_PG_ADMIN_DSN":     "orders-pg-admin/dsn",
		},
		secretFiles: map[string]string{
			"/etc/credbroker/tls/tls.crt": "credbroker-tls/tls.crt",
			"/etc/credbroker/tls/tls.key": "credbroker-tls/tls.key",
		},
	},
	"servicemonitor-values.yaml": {
		replicas: 2, minAvailable: 1, tlsSecret: "credbroker-tls", readinessHTTPS: true, metrics: true, serviceMonitor: true,
		secretEnv: map[string]string{"CREDBROKER_DATABASE_URL": "credbroker-database/dsn"},
		secretFiles: map[string]string{
			"/etc/credbroker/tls/tls.crt": "credbroker-tls/tls.crt",
			"/etc/credbroker/tls/tls.key": "credbroker-tls/tls.key",
		},
	},
	"kek-values.yaml": {
		replicas: 2, minAvailable: 1, tlsSecret: "credbroker-tls", readinessHTTPS: true,
		secretEnv: map[string]string{"CREDBROKER_DATABASE_URL": "credbroker-database/dsn"},
		secretFiles: map[string]string{
			"/etc/credbroker/tls/tls.crt": "credbroker-tls/tls.crt",
			"/etc/credbroker/tls/tls.key": "credbroker-tls/tls.key",
			"/etc/credbroker/kek/kek":     "credbroker-kek/kek",
		},
	},
}

func TestChart(t *testing.T) {
	helmBinary(t)
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no values files in the chart's ci/")
	}
	seen := map[string]bool{}
	for _, file := range files {
		name := filepath.Base(file)
		seen[name] = true
		want, ok := chartCases[name]
		if !ok {
			t.Errorf("ci/%s has no case in chartCases: say what it must render", name)
			continue
		}
		t.Run(strings.TrimSuffix(name, "-values.yaml"), func(t *testing.T) {
			t.Parallel()
			o := mustRender(t, []string{file})
			checkChart(t, o, want)
		})
	}
	for name := range chartCases {
		if !seen[name] {
			t.Errorf("chartCases has %s, which is not in ci/", name)
		}
	}
}

func TestChartLint(t *testing.T) {
	helm := helmBinary(t)
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		out, err := exec.CommandContext(t.Context(), helm, "lint", "--strict", chartDir(t), "--namespace", chartNamespace,
			"--kube-version", kubeVersion, "--values", file).CombinedOutput()
		if err != nil {
			t.Errorf("helm lint --strict --values %s: %v\n%s", filepath.Base(file), err, out)
		}
	}
}

// checkChart checks the properties every rendering must have, and those
// want names.
func checkChart(t *testing.T, o *objects, want chartWant) {
	dep := mustOne(t, "Deployment", o.Deployments)
	svc := mustOne(t, "Service", o.Services)
	cm := mustOne(t, "ConfigMap", o.ConfigMaps)
	sa := mustOne(t, "ServiceAccount", o.ServiceAccounts)
	pod := &dep.Spec.Template.Spec
	podLabels := labels.Set(dep.Spec.Template.Labels)

	if len(o.Secrets) != 0 {
		t.Errorf("the chart rendered %d Secrets: secrets come from Secrets the operator makes, by name", len(o.Secrets))
	}

	// Replicas, selectors, spread.
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != want.replicas {
		t.Errorf("replicas = %v, want %d", dep.Spec.Replicas, want.replicas)
	}
	if sel := dep.Spec.Selector; sel == nil || !labels.SelectorFromSet(sel.MatchLabels).Matches(podLabels) || len(sel.MatchExpressions) != 0 {
		t.Errorf("the Deployment's selector %v does not select its pods %v", dep.Spec.Selector, podLabels)
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("the Service's selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	checkAntiAffinity(t, pod, podLabels)
	if want.minAvailable > 0 {
		pdb := mustOne(t, "PodDisruptionBudget", o.PDBs)
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != want.minAvailable {
			t.Errorf("PDB minAvailable = %v, want %d", pdb.Spec.MinAvailable, want.minAvailable)
		}
		if pdb.Spec.Selector == nil || !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(podLabels) {
			t.Errorf("the PDB's selector %v does not select the pods", pdb.Spec.Selector)
		}
		if want.minAvailable >= int(want.replicas) {
			t.Errorf("minAvailable %d with %d replicas: no node could ever be drained", want.minAvailable, want.replicas)
		}
	}

	// Security: non-root, read-only root, nothing to escalate with.
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "credbroker" {
		t.Fatalf("want one container, credbroker; got %d", len(pod.Containers))
	}
	c := &pod.Containers[0]
	checkPodSecurity(t, pod)
	checkContainerSecurity(t, pod, c)
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false: every Service of the namespace becomes variables in the broker's environment")
	}

	// The service-account token only for a kubernetes: issuer.
	if got := pod.AutomountServiceAccountToken; got == nil || *got != want.automountToken {
		t.Errorf("pod automountServiceAccountToken = %v, want %v", deref(got), want.automountToken)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the ServiceAccount itself must not automount its token (the pod spec decides)")
	}
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("the pod runs as service account %q, the chart made %q", pod.ServiceAccountName, sa.Name)
	}
	if want.clusterRoleBinding {
		crb := mustOne(t, "ClusterRoleBinding", o.ClusterRoleBindings)
		if crb.RoleRef.Name != "system:service-account-issuer-discovery" || len(crb.Subjects) != 1 ||
			crb.Subjects[0].Kind != "ServiceAccount" || crb.Subjects[0].Name != sa.Name || crb.Subjects[0].Namespace != chartNamespace {
			t.Errorf("ClusterRoleBinding = %+v %+v, want issuer discovery for %s/%s", crb.RoleRef, crb.Subjects, chartNamespace, sa.Name)
		}
	} else if len(o.ClusterRoleBindings) != 0 {
		t.Errorf("unexpected ClusterRoleBinding")
	}

	// Probes.
	checkProbes(t, c, want.readinessHTTPS)

	// The config: from the ConfigMap, named on the command line.
	cfgPath := "/etc/credbroker/config/credbroker.yaml"
	if !slices.Contains(c.Args, "--config="+cfgPath) || c.Args[0] != "serve" {
		t.Errorf("args = %q, want serve --config=%s", c.Args, cfgPath)
	}
	if src, ok := fileSource(pod, c, cfgPath); !ok || src.configMap != cm.Name || src.key != "credbroker.yaml" {
		t.Errorf("%s is not the ConfigMap %s's credbroker.yaml: %+v", cfgPath, cm.Name, src)
	}
	if sum := dep.Spec.Template.Annotations["checksum/config"]; !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum) {
		t.Errorf("checksum/config annotation = %q, want the config's sha256", sum)
	}
	cfgText := cm.Data["credbroker.yaml"]
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cfgText), &cfg); err != nil {
		t.Fatalf("the ConfigMap's credbroker.yaml: %v\n%s", err, cfgText)
	}
	if cfg["listen"] != ":8443" {
		t.Errorf("listen = %v, want :8443", cfg["listen"])
	}
	checkPort(t, c, svc, "api", 8443)

	// Every secret the config names is a Secret's key: env: references are
	// variables from secretKeyRefs, file: references and *_file paths are
	// files of Secret volumes.
	gotEnv := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
			t.Errorf("env %s is not from a Secret: every variable of the broker is a secret (config goes in the ConfigMap)", e.Name)
			continue
		}
		gotEnv[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
	}
	if !maps.Equal(gotEnv, want.secretEnv) {
		t.Errorf("env from Secrets = %v, want %v", gotEnv, want.secretEnv)
	}
	envRefs, fileRefs := configRefs(cfg)
	for _, name := range envRefs {
		if _, ok := gotEnv[name]; !ok {
			t.Errorf("the config names env:%s, which the container does not get", name)
		}
	}
	gotFiles := map[string]string{}
	for _, p := range fileRefs {
		src, ok := fileSource(pod, c, p)
		if !ok || src.secret == "" {
			t.Errorf("the config names the file %s, which is not a key of a mounted Secret (%+v)", p, src)
			continue
		}
		gotFiles[p] = src.secret + "/" + src.key
	}
	if !maps.Equal(gotFiles, want.secretFiles) {
		t.Errorf("files the config names = %v, want %v", gotFiles, want.secretFiles)
	}

	// TLS.
	tls, _ := cfg["tls"].(map[string]any)
	if tls == nil {
		t.Fatal("the config has no tls: off loopback the broker refuses to listen without it")
	}
	if gotFiles[fmt.Sprint(tls["cert_file"])] != want.tlsSecret+"/tls.crt" || gotFiles[fmt.Sprint(tls["key_file"])] != want.tlsSecret+"/tls.key" {
		t.Errorf("tls files %v, %v are not tls.crt and tls.key of Secret %s", tls["cert_file"], tls["key_file"], want.tlsSecret)
	}
	if want.clientCASecret != "" {
		ca := fmt.Sprint(tls["client_ca_file"])
		if !strings.HasPrefix(gotFiles[ca], want.clientCASecret+"/") || tls["client_auth"] != "require" {
			t.Errorf("tls.client_ca_file %s (client_auth %v) is not from Secret %s", ca, tls["client_auth"], want.clientCASecret)
		}
	} else if _, ok := tls["client_ca_file"]; ok {
		t.Error("unexpected tls.client_ca_file")
	}

	// Metrics and the ServiceMonitor.
	_, hasMetricsListen := cfg["metrics_listen"]
	if hasMetricsListen != want.metrics {
		t.Errorf("metrics_listen set = %v, want %v", hasMetricsListen, want.metrics)
	}
	if want.metrics {
		checkPort(t, c, svc, "metrics", 9420)
		if cfg["metrics_listen"] != ":9420" {
			t.Errorf("metrics_listen = %v, want :9420", cfg["metrics_listen"])
		}
	}
	if want.serviceMonitor {
		sm := mustOne(t, "ServiceMonitor", o.ServiceMonitors)
		if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
			t.Errorf("the ServiceMonitor's selector %v does not select the Service %v", sm.Spec.Selector, svc.Labels)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Scheme != "https" ||
			sm.Spec.Endpoints[0].TLSConfig == nil || sm.Spec.Endpoints[0].TLSConfig.ServerName == "" {
			t.Errorf("ServiceMonitor endpoints = %+v, want port metrics over https with a server name", sm.Spec.Endpoints)
		}
	} else if len(o.ServiceMonitors) != 0 {
		t.Error("unexpected ServiceMonitor")
	}

	// cert-manager.
	if want.certificate {
		cert := mustOne(t, "Certificate", o.Certificates)
		if cert.Spec.SecretName != want.tlsSecret {
			t.Errorf("the Certificate writes Secret %s, the pods mount %s", cert.Spec.SecretName, want.tlsSecret)
		}
		svcName := svc.Name + "." + chartNamespace + ".svc"
		if !slices.Contains(cert.Spec.DNSNames, svcName) || cert.Spec.IssuerRef.Name == "" {
			t.Errorf("Certificate dnsNames %v lack %s, or no issuerRef", cert.Spec.DNSNames, svcName)
		}
	} else if len(o.Certificates) != 0 {
		t.Error("unexpected Certificate")
	}

	if want.networkPolicy {
		np := mustOne(t, "NetworkPolicy", o.NetworkPolicies)
		if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(podLabels) {
			t.Errorf("the NetworkPolicy's selector %v does not select the pods", np.Spec.PodSelector)
		}
	} else if len(o.NetworkPolicies) != 0 {
		t.Error("unexpected NetworkPolicy")
	}

	// The config is one the broker accepts.
	checkConfig(t, cfgText)
}

func checkAntiAffinity(t *testing.T, pod *corev1.PodSpec, podLabels labels.Set) {
	t.Helper()
	if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil {
		t.Error("no pod anti-affinity: both replicas may land on one node")
		return
	}
	for _, term := range pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		sel := term.PodAffinityTerm.LabelSelector
		if term.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" && sel != nil &&
			labels.SelectorFromSet(sel.MatchLabels).Matches(podLabels) {
			return
		}
	}
	t.Errorf("no preferred anti-affinity on kubernetes.io/hostname selecting the pods: %+v", pod.Affinity.PodAntiAffinity)
}

func checkPodSecurity(t *testing.T, pod *corev1.PodSpec) {
	t.Helper()
	sc := pod.SecurityContext
	if sc == nil || deref(sc.RunAsNonRoot) != true || deref(sc.RunAsUser) != 65532 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot, runAsUser 65532, seccomp RuntimeDefault", sc)
	}
}

// checkContainerSecurity checks what the restricted Pod Security Standard
// asks of a container, and a read-only root filesystem.
func checkContainerSecurity(t *testing.T, pod *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("container %s has no securityContext", c.Name)
		return
	}
	nonRoot := deref(sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && pod.SecurityContext != nil && deref(pod.SecurityContext.RunAsNonRoot))
	if !nonRoot {
		t.Errorf("container %s: runAsNonRoot is not true", c.Name)
	}
	if !deref(sc.ReadOnlyRootFilesystem) {
		t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
	}
	if deref(sc.Privileged) {
		t.Errorf("container %s is privileged", c.Name)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container %s: capabilities = %+v, want drop [ALL] and no add", c.Name, sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && pod.SecurityContext != nil {
		seccomp = pod.SecurityContext.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container %s: seccompProfile = %+v, want RuntimeDefault", c.Name, seccomp)
	}
}

func checkProbes(t *testing.T, c *corev1.Container, https bool) {
	t.Helper()
	r := c.ReadinessProbe
	switch {
	case r == nil:
		t.Fatal("no readiness probe")
	case https:
		if g := r.HTTPGet; g == nil || g.Scheme != corev1.URISchemeHTTPS || g.Path != "/readyz" || g.Port.String() != "api" {
			t.Errorf("readiness probe = %+v, want an HTTPS GET of /readyz on port api", r.ProbeHandler)
		}
	default:
		if r.TCPSocket == nil || r.TCPSocket.Port.String() != "api" {
			t.Errorf("readiness probe = %+v, want a TCP check of port api (mTLS: the kubelet has no client certificate)", r.ProbeHandler)
		}
	}
	if c.LivenessProbe == nil || c.StartupProbe == nil {
		t.Error("want liveness and startup probes")
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil {
		t.Error("the liveness probe must not depend on the store (a store outage would restart every replica)")
	}
}

// checkPort checks that the container listens on a port named name, number
// n, and the Service exposes it.
func checkPort(t *testing.T, c *corev1.Container, svc *corev1.Service, name string, n int32) {
	t.Helper()
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name && p.ContainerPort == n }) {
		t.Errorf("the container has no port %s %d: %+v", name, n, c.Ports)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == name && p.TargetPort.String() == name }) {
		t.Errorf("the Service does not expose port %s: %+v", name, svc.Spec.Ports)
	}
}

// source is where a file in a container comes from.
type source struct {
	secret, configMap, emptyDir, projected string // the volume's kind, by its object's name (volume name for emptyDir/projected)
	key                                    string
}

// fileSource finds which volume and key the file at p in container c is.
func fileSource(pod *corev1.PodSpec, c *corev1.Container, p string) (source, bool) {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil || best.SubPath != "" {
		return source{}, false
	}
	rel := strings.TrimPrefix(p, strings.TrimSuffix(best.MountPath, "/")+"/")
	for _, v := range pod.Volumes {
		if v.Name != best.Name {
			continue
		}
		keyOf := func(items []corev1.KeyToPath) (string, bool) {
			if len(items) == 0 {
				return rel, !strings.Contains(rel, "/")
			}
			for _, it := range items {
				if path.Clean(it.Path) == rel {
					return it.Key, true
				}
			}
			return "", false
		}
		switch {
		case v.Secret != nil:
			k, ok := keyOf(v.Secret.Items)
			return source{secret: v.Secret.SecretName, key: k}, ok
		case v.ConfigMap != nil:
			k, ok := keyOf(v.ConfigMap.Items)
			return source{configMap: v.ConfigMap.Name, key: k}, ok
		case v.EmptyDir != nil:
			return source{emptyDir: v.Name, key: rel}, true
		case v.Projected != nil:
			return source{projected: v.Name, key: rel}, true
		}
	}
	return source{}, false
}

// configRefs walks a decoded config and returns the variables its env:
// references name and the files its file: references and *_file keys name.
func configRefs(cfg any) (env, files []string) {
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(k, x)
			}
		case []any:
			for _, x := range v {
				walk(key, x)
			}
		case string:
			switch {
			case strings.HasPrefix(v, "env:"):
				env = append(env, strings.TrimPrefix(v, "env:"))
			case strings.HasPrefix(v, "file:"):
				files = append(files, strings.TrimPrefix(v, "file:"))
			case strings.HasSuffix(key, "_file"):
				files = append(files, v)
			}
		}
	}
	walk("", cfg)
	return env, files
}

// checkConfig runs `credbroker config check` on the config the chart
// renders.
func checkConfig(t *testing.T, cfg string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "credbroker.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", file)
	if code == 0 {
		return
	}
	t.Errorf("credbroker config check on the chart's config: exit %d\n%s%s\nconfig:\n%s", code, stdout, stderr, cfg)
}

func TestChartConfigChangeRollsPods(t *testing.T) {
	defaults := []string{filepath.Join(chartDir(t), "ci", "defaults-values.yaml")}
	sum := func(sets ...string) string {
		dep := mustOne(t, "Deployment", mustRender(t, defaults, sets...).Deployments)
		return dep.Spec.Template.Annotations["checksum/config"]
	}
	base := sum()
	if got := sum("config.reaper.interval=10s"); got == base {
		t.Error("a config change leaves checksum/config unchanged: the pods would keep the old config")
	}
	if got := sum("metrics.enabled=false"); got == base {
		t.Error("turning metrics off leaves checksum/config unchanged")
	}
	if got := sum("replicaCount=4"); got != base {
		t.Error("a change of replicas alone changed checksum/config: the pods would roll for nothing")
	}
}

func TestChartRefusesBadValues(t *testing.T) {
	defaults := filepath.Join(chartDir(t), "ci", "defaults-values.yaml")
	for name, tc := range map[string]struct {
		files []string
		sets  []string
		want  string
	}{
		"NoIssuer":               {want: "config.issuers: the broker needs at least one issuer"},
		"ListenInConfig":         {files: []string{defaults}, sets: []string{"config.listen=127.0.0.1:8420"}, want: "config.listen: set by the chart"},
		"TLSInConfig":            {files: []string{defaults}, sets: []string{"config.tls.cert_file=/x"}, want: "config.tls: set by the chart"},
		"CertManagerNoIssuerRef": {files: []string{defaults}, sets: []string{"tls.certManager.enabled=true"}, want: "tls.certManager.issuerRef.name"},
		"NoDatabaseSecret":       {files: []string{defaults}, sets: []string{"database.existingSecret="}, want: "database.existingSecret"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.files, tc.sets...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render error = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestChartDevDatabaseSecret(t *testing.T) {
	const dsn = "postgres://credbroker:devonly@postgres:5432/credbroker"
	o := mustRender(t, []string{filepath.Join(chartDir(t), "ci", "defaults-values.yaml")}, "devDatabaseURL="+dsn)
	s := mustOne(t, "Secret", o.Secrets)
	if s.Annotations["credbroker.dev/development-only"] != "true" || s.StringData["dsn"] != dsn {
		t.Errorf("dev Secret = %+v, want the DSN under dsn, marked development-only", s)
	}
	c := mustOne(t, "Deployment", o.Deployments).Spec.Template.Spec.Containers[0]
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "CREDBROKER_DATABASE_URL" })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil || c.Env[i].ValueFrom.SecretKeyRef.Name != s.Name {
		t.Errorf("CREDBROKER_DATABASE_URL does not come from the dev Secret %s", s.Name)
	}
	// Without devDatabaseURL no Secret is made (checked for every ci/ file
	// by TestChart).
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// podOf returns the pod spec of a Deployment.
func podOf(d *appsv1.Deployment) *corev1.PodSpec { return &d.Spec.Template.Spec }
