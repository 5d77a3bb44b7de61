package deploy

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	corev1 "k8s.io/api/core/v1"
)

// TestAgentSidecarExample decodes the example workload strictly and checks
// that the agent is a native sidecar with a readiness probe on its /ready,
// and that the app reads the files the agent writes from a shared emptyDir.
func TestAgentSidecarExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir(t), "examples", "agent-sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := decodeManifest(t, data)
	dep := mustOne(t, "Deployment", o.Deployments)
	cm := mustOne(t, "ConfigMap", o.ConfigMaps)
	sa := mustOne(t, "ServiceAccount", o.ServiceAccounts)
	pod := podOf(dep)
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("the pod runs as %q, the example makes %q", pod.ServiceAccountName, sa.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the example mounts the Kubernetes API token: only the projected credbroker token is needed")
	}
	checkPodSecurity(t, pod)

	i := slices.IndexFunc(pod.InitContainers, func(c corev1.Container) bool { return c.Name == "credbroker-agent" })
	if i < 0 || len(pod.Containers) != 1 {
		t.Fatalf("want an init container credbroker-agent and one app container; got %d init, %d app", len(pod.InitContainers), len(pod.Containers))
	}
	agent, app := &pod.InitContainers[i], &pod.Containers[0]
	if agent.RestartPolicy == nil || *agent.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the agent is not a native sidecar (restartPolicy: Always): the app would wait for it to exit")
	}
	for _, c := range []*corev1.Container{agent, app} {
		checkContainerSecurity(t, pod, c)
	}
	if agent.Args[0] != "agent" {
		t.Fatalf("agent args = %q, want credbroker agent ROLE …", agent.Args)
	}
	flags := map[string][]string{}
	for _, a := range agent.Args[2:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(k, "--") {
			t.Fatalf("agent arg %q: write --flag=value", a)
		}
		flags[k] = append(flags[k], v)
	}

	// Readiness (and startup: the app starts once a credential is on disk)
	// on the agent's /ready, at the port of --ready-addr.
	if len(flags["--ready-addr"]) != 1 {
		t.Fatal("the agent has no --ready-addr")
	}
	_, readyPort, err := net.SplitHostPort(flags["--ready-addr"][0])
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": agent.ReadinessProbe, "startup": agent.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" {
			t.Errorf("agent %s probe = %+v, want GET /ready", name, p)
			continue
		}
		port := p.HTTPGet.Port.String()
		if j := slices.IndexFunc(agent.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == port }); j >= 0 {
			port = strconv.Itoa(int(agent.Ports[j].ContainerPort))
		}
		if port != readyPort {
			t.Errorf("agent %s probe is on port %s, --ready-addr on %s", name, p.HTTPGet.Port.String(), readyPort)
		}
	}

	// The agent's identity: a projected token for the broker's audience.
	env := map[string]string{}
	for _, e := range agent.Env {
		env[e.Name] = e.Value
	}
	if !strings.HasPrefix(env["CREDBROKER_ADDR"], "https://") {
		t.Errorf("CREDBROKER_ADDR = %q: the broker speaks TLS in a cluster", env["CREDBROKER_ADDR"])
	}
	src, ok := fileSource(pod, agent, env["CREDBROKER_TOKEN_FILE"])
	if !ok || src.projected == "" {
		t.Errorf("CREDBROKER_TOKEN_FILE %s is not a projected token", env["CREDBROKER_TOKEN_FILE"])
	} else {
		v := pod.Volumes[slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == src.projected })]
		if s := v.Projected.Sources; len(s) != 1 || s[0].ServiceAccountToken == nil || s[0].ServiceAccountToken.Audience != "credbroker" ||
			s[0].ServiceAccountToken.Path != src.key {
			t.Errorf("projected token %+v: want a service-account token for audience credbroker at %s", v.Projected, src.key)
		}
	}
	if src, ok := fileSource(pod, agent, env["SSL_CERT_FILE"]); !ok || src.configMap == "" {
		t.Errorf("SSL_CERT_FILE %s (the broker's CA) is not from a ConfigMap", env["SSL_CERT_FILE"])
	}

	// Each --template is a valid template from the example's ConfigMap.
	for _, tmpl := range flags["--template"] {
		src, ok := fileSource(pod, agent, tmpl)
		if !ok || src.configMap != cm.Name {
			t.Errorf("template %s is not from ConfigMap %s", tmpl, cm.Name)
			continue
		}
		if _, err := template.New(src.key).Option("missingkey=error").Parse(cm.Data[src.key]); err != nil {
			t.Errorf("template %s: %v", src.key, err)
		}
	}

	// Every --out is in an in-memory emptyDir the app mounts read-only.
	if len(flags["--out"]) == 0 {
		t.Fatal("the agent writes no --out")
	}
	for _, out := range flags["--out"] {
		a, ok := fileSource(pod, agent, out)
		if !ok || a.emptyDir == "" {
			t.Errorf("--out %s is not in an emptyDir", out)
			continue
		}
		v := pod.Volumes[slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == a.emptyDir })]
		if v.EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("volume %s is on disk: credentials belong in memory (medium: Memory)", v.Name)
		}
		b, ok := fileSource(pod, app, out)
		if !ok || b.emptyDir != a.emptyDir {
			t.Errorf("the app does not see %s at the same path", out)
		}
		for _, m := range app.VolumeMounts {
			if m.Name == a.emptyDir && !m.ReadOnly {
				t.Errorf("the app mounts %s read-write", m.Name)
			}
		}
	}
	// The files are 0600, the agent's: the app must run as the same user.
	if agent.SecurityContext.RunAsUser != nil || app.SecurityContext.RunAsUser != nil {
		t.Error("agent and app must share the pod's runAsUser: the credential files are 0600")
	}
}
