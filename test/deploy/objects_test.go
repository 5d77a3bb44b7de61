package deploy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// objects are the Kubernetes objects of a rendered manifest, decoded
// strictly, by kind.
type objects struct {
	Deployments         []*appsv1.Deployment
	Services            []*corev1.Service
	ConfigMaps          []*corev1.ConfigMap
	Secrets             []*corev1.Secret
	ServiceAccounts     []*corev1.ServiceAccount
	PDBs                []*policyv1.PodDisruptionBudget
	NetworkPolicies     []*networkingv1.NetworkPolicy
	ClusterRoleBindings []*rbacv1.ClusterRoleBinding
	Certificates        []*certificate
	ServiceMonitors     []*serviceMonitor
}

// decodeManifest splits a multi-document YAML stream and decodes each
// document strictly into the type of its apiVersion and kind: an unknown
// field, a duplicate field, a wrong type or an unknown kind is an error.
func decodeManifest(t *testing.T, manifest []byte) *objects {
	t.Helper()
	var out objects
	for i, doc := range splitYAML(manifest) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		var dst any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			dst = appendNew(&out.Deployments)
		case "v1 Service":
			dst = appendNew(&out.Services)
		case "v1 ConfigMap":
			dst = appendNew(&out.ConfigMaps)
		case "v1 Secret":
			dst = appendNew(&out.Secrets)
		case "v1 ServiceAccount":
			dst = appendNew(&out.ServiceAccounts)
		case "policy/v1 PodDisruptionBudget":
			dst = appendNew(&out.PDBs)
		case "networking.k8s.io/v1 NetworkPolicy":
			dst = appendNew(&out.NetworkPolicies)
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			dst = appendNew(&out.ClusterRoleBindings)
		case "cert-manager.io/v1 Certificate":
			dst = appendNew(&out.Certificates)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			dst = appendNew(&out.ServiceMonitors)
		default:
			t.Fatalf("document %d: no decoder for apiVersion %q kind %q (add it to decodeManifest)\n%s", i, tm.APIVersion, tm.Kind, doc)
		}
		if err := yaml.UnmarshalStrict(doc, dst); err != nil {
			t.Fatalf("document %d (%s %s): strict decode: %v\n%s", i, tm.APIVersion, tm.Kind, err, doc)
		}
	}
	return &out
}

// appendNew appends a new zero T to *list and returns it.
func appendNew[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// splitYAML splits a YAML stream at its "---" lines and drops documents
// that hold only comments.
func splitYAML(stream []byte) [][]byte {
	var docs [][]byte
	for _, doc := range bytes.Split(append([]byte("\n"), stream...), []byte("\n---")) {
		empty := true
		for _, line := range strings.Split(string(doc), "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, doc)
		}
	}
	return docs
}

// The two custom resources the chart can render are decoded into structs
// of their own: the upstream Go types would bring cert-manager's and the
// Prometheus Operator's module graphs (controller-runtime among them) into
// go.mod for two objects. Each struct holds the fields of the upstream CRD's
// schema that the chart or a user's values can set, named as upstream names
// them, and nothing else, so a field the CRD does not know (or the chart
// misspells) fails the strict decode.

// certificate is cert-manager.io/v1 Certificate.
type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		IssuerRef   struct {
			Name  string `json:"name"`
			Kind  string `json:"kind,omitempty"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef"`
		PrivateKey *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Encoding       string `json:"encoding,omitempty"`
			Size           int    `json:"size,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
	} `json:"spec"`
}

// serviceMonitor is monitoring.coreos.com/v1 ServiceMonitor.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string         `json:"port,omitempty"`
			Path          string         `json:"path,omitempty"`
			Scheme        string         `json:"scheme,omitempty"`
			Interval      string         `json:"interval,omitempty"`
			ScrapeTimeout string         `json:"scrapeTimeout,omitempty"`
			TLSConfig     *safeTLSConfig `json:"tlsConfig,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// safeTLSConfig is the Prometheus Operator's SafeTLSConfig.
type safeTLSConfig struct {
	CA                 *secretOrConfigMap        `json:"ca,omitempty"`
	Cert               *secretOrConfigMap        `json:"cert,omitempty"`
	KeySecret          *corev1.SecretKeySelector `json:"keySecret,omitempty"`
	ServerName         string                    `json:"serverName,omitempty"`
	InsecureSkipVerify bool                      `json:"insecureSkipVerify,omitempty"`
	MinVersion         string                    `json:"minVersion,omitempty"`
	MaxVersion         string                    `json:"maxVersion,omitempty"`
}

type secretOrConfigMap struct {
	Secret    *corev1.SecretKeySelector    `json:"secret,omitempty"`
	ConfigMap *corev1.ConfigMapKeySelector `json:"configMap,omitempty"`
}

// mustOne returns the only element of list, failing the test otherwise.
func mustOne[T any](t *testing.T, what string, list []*T) *T {
	t.Helper()
	if len(list) != 1 {
		t.Fatalf("want exactly one %s, got %d", what, len(list))
	}
	return list[0]
}

func (o *objects) String() string {
	return fmt.Sprintf("%d Deployments, %d Services, %d ConfigMaps, %d Secrets, %d ServiceAccounts, %d PDBs, %d NetworkPolicies, %d ClusterRoleBindings, %d Certificates, %d ServiceMonitors",
		len(o.Deployments), len(o.Services), len(o.ConfigMaps), len(o.Secrets), len(o.ServiceAccounts), len(o.PDBs),
		len(o.NetworkPolicies), len(o.ClusterRoleBindings), len(o.Certificates), len(o.ServiceMonitors))
}
