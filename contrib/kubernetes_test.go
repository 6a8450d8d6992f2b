package contrib_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/internal/lab"
)

// The Kubernetes objects below model only the fields the manifests use.
// They are decoded with KnownFields, so a misspelt or misplaced field (a
// probe under the wrong key, "readinesProbe") fails the test instead of
// being ignored the way kubectl apply would warn and drop it.

type k8sMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type k8sObject struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	Spec       yaml.Node         `yaml:"spec"`
}

type serviceSpec struct {
	ClusterIP string            `yaml:"clusterIP"`
	Selector  map[string]string `yaml:"selector"`
	Ports     []struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort string `yaml:"targetPort"`
		Protocol   string `yaml:"protocol"`
	} `yaml:"ports"`
}

type statefulSetSpec struct {
	ServiceName         string `yaml:"serviceName"`
	Replicas            int    `yaml:"replicas"`
	PodManagementPolicy string `yaml:"podManagementPolicy"`
	Selector            struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     podSpec `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			AccessModes []string `yaml:"accessModes"`
			Resources   struct {
				Requests map[string]string `yaml:"requests"`
			} `yaml:"resources"`
		} `yaml:"spec"`
	} `yaml:"volumeClaimTemplates"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool       `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []container `yaml:"initContainers"`
	Containers                    []container `yaml:"containers"`
	Volumes                       []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		EmptyDir *struct{} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	SecurityContext struct {
		RunAsUser                *int  `yaml:"runAsUser"`
		RunAsGroup               *int  `yaml:"runAsGroup"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

func decodeStrict(t *testing.T, n *yaml.Node, v any) {
	t.Helper()
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	require.NoError(t, enc.Encode(n))
	require.NoError(t, enc.Close())
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(v))
}

// k8sManifests decodes every document of contrib/kubernetes/*.yaml, keyed
// by kind.
func k8sManifests(t *testing.T) map[string]k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	objs := map[string]k8sObject{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, f)
			require.NotEmpty(t, o.APIVersion, f)
			require.NotEmpty(t, o.Metadata.Name, f)
			_, dup := objs[o.Kind]
			require.False(t, dup, "%s: second %s", f, o.Kind)
			objs[o.Kind] = o
		}
	}
	return objs
}

type manifests struct {
	configMap k8sObject
	service   serviceSpec
	sts       statefulSetSpec
	stsMeta   k8sMeta
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	objs := k8sManifests(t)
	require.ElementsMatch(t, []string{"ConfigMap", "Service", "StatefulSet"}, slices.Collect(maps.Keys(objs)))
	var m manifests
	m.configMap = objs["ConfigMap"]
	require.Equal(t, "v1", m.configMap.APIVersion)
	svc, sts := objs["Service"], objs["StatefulSet"]
	decodeStrict(t, &svc.Spec, &m.service)
	require.Equal(t, "v1", svc.APIVersion)
	decodeStrict(t, &sts.Spec, &m.sts)
	require.Equal(t, "apps/v1", objs["StatefulSet"].APIVersion)
	m.stsMeta = objs["StatefulSet"].Metadata
	return m
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	sts := m.sts
	pod := sts.Template.Spec

	// Headless Service selecting the pods, named as the StatefulSet's
	// serviceName.
	require.Equal(t, "None", m.service.ClusterIP)
	require.Equal(t, sts.ServiceName, k8sManifests(t)["Service"].Metadata.Name)
	require.Equal(t, sts.Selector.MatchLabels, m.service.Selector)
	for k, v := range sts.Selector.MatchLabels {
		require.Equal(t, v, sts.Template.Metadata.Labels[k], "pod label %s", k)
	}

	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	require.Contains(t, c.Args, "daemon")
	require.Contains(t, c.Args, "--config.file=/etc/exposure/exposure.yml")
	require.Contains(t, c.Args, "--storage.path=/var/lib/exposure/exposure.db")

	// Probes on the daemon's own endpoints, on the named port the Service
	// targets.
	require.NotNil(t, c.ReadinessProbe)
	require.NotNil(t, c.LivenessProbe)
	require.Equal(t, "/-/ready", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "/-/healthy", c.LivenessProbe.HTTPGet.Path)
	require.Len(t, c.Ports, 1)
	require.Equal(t, c.Ports[0].Name, c.ReadinessProbe.HTTPGet.Port)
	require.Equal(t, c.Ports[0].Name, c.LivenessProbe.HTTPGet.Port)
	require.Equal(t, c.Ports[0].Name, m.service.Ports[0].TargetPort)
	require.Contains(t, c.Args, "--web.listen-address=:"+strconv.Itoa(c.Ports[0].ContainerPort))

	// NET_RAW and nothing else.
	sc := c.SecurityContext
	require.Equal(t, []string{"ALL"}, sc.Capabilities.Drop)
	require.Equal(t, []string{"NET_RAW"}, sc.Capabilities.Add)
	require.NotNil(t, sc.AllowPrivilegeEscalation)
	require.False(t, *sc.AllowPrivilegeEscalation)
	require.NotNil(t, sc.ReadOnlyRootFilesystem)
	require.True(t, *sc.ReadOnlyRootFilesystem)
	require.NotNil(t, sc.SeccompProfile)
	require.Equal(t, "RuntimeDefault", sc.SeccompProfile.Type)

	// Every mount has a volume or a claim template; the database is on
	// the claim.
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			require.Equal(t, m.configMap.Metadata.Name, v.ConfigMap.Name)
		}
	}
	require.Len(t, sts.VolumeClaimTemplates, 1)
	claim := sts.VolumeClaimTemplates[0]
	volumes[claim.Metadata.Name] = true
	require.Equal(t, []string{"ReadWriteOnce"}, claim.Spec.AccessModes)
	require.NotEmpty(t, claim.Spec.Resources.Requests["storage"])
	mounts := map[string]string{}
	for _, ctr := range append(slices.Clone(pod.InitContainers), c) {
		for _, vm := range ctr.VolumeMounts {
			require.True(t, volumes[vm.Name], "container %s mounts unknown volume %s", ctr.Name, vm.Name)
			if ctr.Name == c.Name {
				mounts[vm.MountPath] = vm.Name
			}
		}
	}
	require.Equal(t, claim.Metadata.Name, mounts["/var/lib/exposure"])
	require.Contains(t, mounts, "/etc/exposure")

	// The container gives only args: the image's entry point must be the
	// binary, built from this repository's command.
	df, err := os.ReadFile(filepath.Join("kubernetes", "Dockerfile"))
	require.NoError(t, err)
	require.Contains(t, string(df), `ENTRYPOINT ["/usr/local/bin/exposure"]`)
	require.Contains(t, string(df), "CGO_ENABLED=0 go build -trimpath -o /out/exposure ./cmd/exposure")
	_, err = os.Stat(filepath.Join("..", "cmd", "exposure", "main.go"))
	require.NoError(t, err)
}

// shardScript is the init container's script and its SHARD_TOTAL.
func shardScript(t *testing.T, m manifests) (script string, total int) {
	t.Helper()
	require.Len(t, m.sts.Template.Spec.InitContainers, 1)
	ic := m.sts.Template.Spec.InitContainers[0]
	require.Equal(t, []string{"/bin/sh", "-c"}, ic.Command)
	require.Len(t, ic.Args, 1)
	var podName bool
	for _, e := range ic.Env {
		switch e.Name {
		case "SHARD_TOTAL":
			n, err := strconv.Atoi(e.Value)
			require.NoError(t, err)
			total = n
		case "POD_NAME":
			require.NotNil(t, e.ValueFrom)
			require.Equal(t, "metadata.name", e.ValueFrom.FieldRef.FieldPath)
			podName = true
		}
	}
	require.True(t, podName, "POD_NAME from the downward API")
	require.Positive(t, total)
	return ic.Args[0], total
}

// renderShard runs the init container's script as the pod called podName
// would, with the ConfigMap's template, and returns the rendered file.
func renderShard(t *testing.T, script, template, podName string, total int) (string, []byte, error) {
	t.Helper()
	dir := t.TempDir()
	tmplDir, outDir := filepath.Join(dir, "template"), filepath.Join(dir, "out")
	require.NoError(t, os.Mkdir(tmplDir, 0o755))
	require.NoError(t, os.Mkdir(outDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmplDir, "exposure.yml"), []byte(template), 0o644))
	require.Equal(t, 1, strings.Count(script, "/etc/exposure-template/"))
	script = strings.ReplaceAll(script, "/etc/exposure-template/", tmplDir+"/")
	script = strings.ReplaceAll(script, "/etc/exposure/", outDir+"/")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "POD_NAME=" + podName, "SHARD_TOTAL=" + strconv.Itoa(total)}
	out, err := cmd.CombinedOutput()
	return filepath.Join(outDir, "exposure.yml"), out, err
}

// TestKubernetesShards runs the StatefulSet's init script for each pod
// ordinal and loads the configuration it renders: replicas = SHARD_TOTAL
// cover every target exactly once, twice as many replicas form HA pairs
// that cover every target exactly twice.
func TestKubernetesShards(t *testing.T) {
	lab.RequireTool(t, "sh")
	m := loadManifests(t)
	script, total := shardScript(t, m)
	require.Equal(t, m.sts.Replicas, total, "SHARD_TOTAL must equal replicas")
	tmpl := m.configMap.Data["exposure.yml"]
	require.NotEmpty(t, tmpl)

	for _, tc := range []struct {
		name     string
		replicas int
		want     int // times each target is scanned
	}{
		{"one replica per shard", total, 1},
		{"HA pairs", 2 * total, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scanned := map[string]int{}
			var all []string
			for ordinal := range tc.replicas {
				pod := m.stsMeta.Name + "-" + strconv.Itoa(ordinal)
				path, out, err := renderShard(t, script, tmpl, pod, total)
				require.NoError(t, err, "%s", out)
				require.Contains(t, string(out), pod+" scans shard "+strconv.Itoa(ordinal%total))
				c, err := config.Load(path)
				require.NoError(t, err)
				require.Equal(t, config.Shard{Index: ordinal % total, Total: total}, c.Global.Shard)
				all = all[:0]
				for _, tg := range c.Targets {
					all = append(all, tg.Name)
				}
				for _, tg := range c.OwnedTargets() {
					scanned[tg.Name]++
				}
			}
			require.Len(t, scanned, len(all), "targets no pod scans: %v", all)
			for name, n := range scanned {
				require.Equal(t, tc.want, n, "target %s", name)
			}
		})
	}

	// A pod name without an ordinal, or a bad total, stops the pod instead
	// of starting it with a wrong shard.
	for _, tc := range []struct {
		pod   string
		total int
	}{
		{"exposure", total},
		{"exposure-x", total},
		{"exposure-1", 0},
	} {
		_, out, err := renderShard(t, script, tmpl, tc.pod, tc.total)
		require.Error(t, err, "pod %q total %d: %s", tc.pod, tc.total, out)
		require.Contains(t, string(out), "shard:")
	}
}
