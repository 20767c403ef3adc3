package phpsession

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/test/testenv"
)

// fixture is the .json written by test/php/gen-fixtures.php next to each
// .sess: what PHP put into the session, in Result's JSON shape.
type fixture struct {
	Description      string              `json:"description"`
	SerializeHandler Format              `json:"serialize_handler"`
	ByClass          map[string][]string `json:"user_identifier_properties_by_class"`
	Firewalls        []FirewallResult    `json:"firewalls"`
}

func loadFixture(t *testing.T, sessPath string) ([]byte, fixture) {
	t.Helper()
	data, err := os.ReadFile(sessPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(strings.TrimSuffix(sessPath, ".sess") + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var fx fixture
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatalf("%s: %v", sessPath, err)
	}
	if len(fx.Firewalls) == 0 {
		t.Fatalf("%s: fixture lists no firewalls", sessPath)
	}
	return data, fx
}

// checkFixtureDir checks that every <case>.sess in dir reads to exactly
// what its <case>.json says PHP stored.
func checkFixtureDir(t *testing.T, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.sess"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sess")
		t.Run(name, func(t *testing.T) {
			data, fx := loadFixture(t, f)
			var fws []string
			for _, fr := range fx.Firewalls {
				fws = append(fws, fr.Firewall)
			}
			r, err := NewReader(Options{Format: fx.SerializeHandler, Firewalls: fws, UserIdentifierPropertiesByClass: fx.ByClass})
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Read(data)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			got := normalizeResult(res.Firewalls)
			want := normalizeResult(fx.Firewalls)
			for i := range got {
				// Fixtures written before the layout was reported do not say.
				if i < len(want) && got[i].Token != nil && want[i].Token != nil && want[i].Token.Layout == "" {
					got[i].Token.Layout = ""
				}
			}
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.MarshalIndent(got, "", "  ")
				wj, _ := json.MarshalIndent(want, "", "  ")
				t.Errorf("%s\ngot  %s\nwant %s", fx.Description, gj, wj)
			}
			if res.Format != fx.SerializeHandler {
				t.Errorf("Result.Format %q, want %q", res.Format, fx.SerializeHandler)
			}
			// auto must detect the handler and read the same.
			ra, err := NewReader(Options{Format: FormatAuto, Firewalls: fws, UserIdentifierPropertiesByClass: fx.ByClass})
			if err != nil {
				t.Fatal(err)
			}
			if resA, err := ra.Read(data); err != nil || resA.Format != fx.SerializeHandler ||
				!reflect.DeepEqual(normalizeResult(resA.Firewalls), normalizeResult(res.Firewalls)) {
				t.Errorf("auto: format %v, err %v", resA, err)
			}
			if res.Meta == nil || res.Meta.Created == 0 || res.Meta.Updated < res.Meta.Created {
				t.Errorf("meta %+v", res.Meta)
			}
			// The generic layers must agree with the Symfony layer too.
			sess, err := DecodeSession(data, fx.SerializeHandler, Limits{})
			if err != nil {
				t.Fatalf("DecodeSession: %v", err)
			}
			if _, ok := sess.Get(AttributesKey); !ok && fws[0] != "" && fx.Firewalls[0].Authenticated {
				t.Errorf("DecodeSession: no %s", AttributesKey)
			}
		})
	}
	return len(files)
}

// normalizeResult drops what JSON cannot carry (Err) and treats nil and
// empty role lists alike.
func normalizeResult(in []FirewallResult) []FirewallResult {
	out := make([]FirewallResult, len(in))
	for i, fr := range in {
		fr.Err = nil
		if fr.Token != nil {
			tk := *fr.Token
			if tk.Roles == nil {
				tk.Roles = []string{}
			}
			fr.Token = &tk
		}
		out[i] = fr
	}
	return out
}

// TestFixtures runs without PHP on the committed fixtures.
func TestFixtures(t *testing.T) {
	if n := checkFixtureDir(t, "testdata"); n < 10 {
		t.Fatalf("only %d fixtures in testdata; run php test/php/gen-fixtures.php", n)
	}
}

// TestFreshFixturesFromPHP regenerates the fixtures with the real PHP and
// Symfony into a temporary directory and checks them, so the decoder is
// tested against what the installed PHP writes today, not only against
// what it wrote when testdata was committed.
//
// Writing ~260 sessions through separate PHP processes takes seconds, so it
// runs only with WSGATE_FRESH_FIXTURES=1 (the committed fixtures are checked
// on every run by TestFixtures).
func TestFreshFixturesFromPHP(t *testing.T) {
	if os.Getenv("WSGATE_FRESH_FIXTURES") != "1" {
		t.Skip("set WSGATE_FRESH_FIXTURES=1 to regenerate the fixtures with PHP and check them")
	}
	php := testenv.PHP(t)
	dir := t.TempDir()
	cmd := exec.Command(php, filepath.Join("..", "test", "php", "gen-fixtures.php"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen-fixtures.php: %v\n%s", err, out)
	}
	if n := checkFixtureDir(t, dir); n < 10 {
		t.Fatalf("gen-fixtures.php produced only %d sessions", n)
	}
}
