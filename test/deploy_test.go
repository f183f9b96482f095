package test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/distgate/distgate/internal/testenv"
)

// TestDeployKubernetesEnv: the DISTGATE_* variables of the sidecar example
// (deploy/kubernetes/sidecar.yaml) make a configuration that `distgate
// check` accepts, with $(POD_IP) as Kubernetes would expand it. The manifest
// itself is not applied anywhere: no cluster runs here.
func TestDeployKubernetesEnv(t *testing.T) {
	b, err := os.ReadFile("../deploy/kubernetes/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*- name: (DISTGATE_[A-Z_]+)\n\s+value: (\S+)`)
	var env []string
	vars := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		v := strings.ReplaceAll(m[2], "$(POD_IP)", "10.244.1.7")
		vars[m[1]] = v
		env = append(env, m[1]+"="+v)
	}
	for _, k := range []string{"DISTGATE_LISTEN", "DISTGATE_UPSTREAM", "DISTGATE_ALLOW_SOURCES", "DISTGATE_ALLOW_NAMES", "DISTGATE_METRICS_LISTEN"} {
		if vars[k] == "" {
			t.Errorf("the sidecar example does not set %s", k)
		}
	}
	stdout, stderr, code := testenv.RunDistgate(t, env, "check")
	out := stdout + stderr
	if code != 0 {
		t.Fatalf("distgate check with %v: exit %d\n%s", vars, code, out)
	}
	for _, want := range []string{
		`listen = "10.244.1.7:9100"`,
		`upstream = "127.0.0.1:9100"`,
		`sources = ["10.244.0.0/16"]`,
		`names = ["myapp@*", "rem-*-myapp@*", "rpc-*-myapp@*"]`,
		`listen = "0.0.0.0:9568"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %s:\n%s", want, out)
		}
	}
}
