package test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/distgate/distgate/internal/testenv"
)

// TestProbeNothingProbed: an epmdless node exposed on a host, probed by the
// host's name alone, is not reported as "0 exposed" with exit 0: no epmd
// lists its port, so nothing was probed, and probe says so and exits 3.
// Given HOST:PORT, it finds the node exposed.
func TestProbeNothingProbed(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p)) // bare, on 127.0.0.2:p
	noEpmd := strconv.Itoa(testenv.Port(t, "127.0.0.2"))

	stdout, stderr, code := testenv.RunDistgate(t, nil, "probe", "-epmd-port", noEpmd, "127.0.0.2")
	t.Logf("probe 127.0.0.2:\n%s%s", stdout, stderr)
	if code != 3 || !strings.Contains(stderr, "nothing could be probed on 127.0.0.2") || !strings.Contains(stderr, "HOST:PORT") {
		t.Errorf("exit %d, stderr %q; want 3 and a message that names HOST:PORT", code, stderr)
	}

	stdout, _, code = testenv.RunDistgate(t, nil, "probe", "-json", "-epmd-port", noEpmd, "127.0.0.2")
	if r := probeParse(t, stdout); code != 3 || r.Exposed || !slices.Equal(r.Unprobed, []string{"127.0.0.2"}) {
		t.Errorf("-json: exit %d, %+v; want 3 and unprobed [127.0.0.2]", code, r)
	}

	stdout, stderr, code = testenv.RunDistgate(t, nil, "probe", "-epmd-port", noEpmd, "127.0.0.2", fmt.Sprintf("127.0.0.2:%d", p))
	if code != 1 || !strings.Contains(stdout, fmt.Sprintf("127.0.0.2:%d  exposed", p)) || stderr != "" {
		t.Errorf("with the port: exit %d, stderr %q, stdout:\n%s\nwant 1, exposed", code, stderr, stdout)
	}
}
