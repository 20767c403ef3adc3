package phpsession

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/test/testenv"
)

// TestDifferentialPHP runs the same inputs through PHP's own unserialize()
// (test/php/unserialize-dump.php) and through Unserialize, and requires the
// same verdict and the same value. Inputs: every table-test input, the
// committed fixtures' token strings, and deterministic mutations of them.
//
// Documented, deliberate differences are allowed: Go rejects trailing bytes
// (then the decoded prefix must equal PHP's value), integers outside int64
// (PHP clamps), duplicate keys in input that also has back-references
// (PHP's result then depends on its hash-bucket memory model), and accepts
// E: enums without knowing their class (PHP, with
// allowed_classes=false, rejects them).
func TestDifferentialPHP(t *testing.T) {
	php := testenv.PHP(t)
	inputs := differentialInputs(t)

	var stdin bytes.Buffer
	for _, in := range inputs {
		stdin.WriteString(hex.EncodeToString([]byte(in)))
		stdin.WriteByte('\n')
	}
	cmd := exec.Command(php, filepath.Join("..", "test", "php", "unserialize-dump.php"))
	cmd.Stdin = &stdin
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("unserialize-dump.php: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != len(inputs) {
		t.Fatalf("PHP answered %d lines for %d inputs", len(lines), len(inputs))
	}

	lim := Limits{MaxDepth: 4096}
	var agreeOK, agreeErr, allowed, mismatches int
	for i, in := range inputs {
		phpOK := strings.HasPrefix(lines[i], "OK ")
		phpVal := strings.TrimPrefix(lines[i], "OK ")
		v, err := UnserializeString(in, lim)
		var de *DecodeError
		errors.As(err, &de)
		mismatch := ""
		switch {
		case err == nil && phpOK:
			if got := phpDump(v, 0); got != phpVal {
				mismatch = "values differ: go " + got + " php " + phpVal
			} else {
				agreeOK++
			}
		case err == nil && !phpOK:
			if hasEnum(v, 0) {
				allowed++
			} else {
				mismatch = "Go accepts " + dump(v) + ", PHP rejects"
			}
		case err != nil && phpOK:
			switch {
			case de != nil && strings.Contains(de.Reason, "unexpected bytes after the value"):
				pv, perr := UnserializeString(in[:de.Offset], lim)
				switch {
				case perr != nil && documentedStrictness(perr):
					allowed++
				case perr != nil || phpDump(pv, 0) != phpVal:
					mismatch = "prefix before trailing bytes differs from PHP's value " + phpVal
				default:
					allowed++
				}
			case documentedStrictness(err):
				allowed++
			default:
				mismatch = "PHP accepts " + phpVal + ", Go rejects: " + err.Error()
			}
		default:
			agreeErr++
		}
		if mismatch != "" {
			mismatches++
			if mismatches <= 25 {
				t.Errorf("input %q: %s", in, mismatch)
			}
		}
	}
	t.Logf("%d inputs: %d accepted alike, %d rejected alike, %d documented differences, %d mismatches",
		len(inputs), agreeOK, agreeErr, allowed, mismatches)
}

// documentedStrictness reports rejections of input PHP accepts that are
// deliberate (see the package docs of Unserialize).
func documentedStrictness(err error) bool {
	var de *DecodeError
	return errors.As(err, &de) && (strings.Contains(de.Reason, "int64 range") ||
		strings.Contains(de.Reason, "also uses back-references"))
}

func hasEnum(v *Value, depth int) bool {
	if depth > 64 {
		return false
	}
	switch v.Kind() {
	case Enum:
		return true
	case Array, Object:
		for i := range v.Entries() {
			if hasEnum(&v.Entries()[i].Value, depth+1) {
				return true
			}
		}
	}
	return false
}

// differentialInputs collects the inputs: table tests, fixture tokens,
// fuzz seeds, then seeded random mutations of all of them.
func differentialInputs(t *testing.T) []string {
	var seeds []string
	seeds = append(seeds, trickySeeds...)
	_, tokens := fixtureSeeds(t)
	seeds = append(seeds, tokens...)
	seeds = append(seeds,
		`a:2:{i:0;i:5;i:1;R:2;}`, `a:1:{i:0;R:1;}`, `O:8:"stdClass":1:{s:1:"a";R:1;}`,
		`a:3:{i:0;O:8:"stdClass":0:{}i:1;R:2;i:2;r:3;}`, `a:2:{i:0;C:3:"Foo":0:{}i:1;r:2;}`,
		`O:3:"Foo":2:{s:1:"5";i:1;i:7;i:2;}`, `a:2:{s:1:"a";i:1;s:1:"a";i:2;}`, `a:1:{s:2:"-0";N;}`,
		`O:8:"stdClass":+1:{s:1:"a";i:1;}`, `S:3:"\61bc";`, `S:2:"\4A\4a";`, `d:.5;`, `d:5.;`,
		`d:-0;`, `d:1E+25;`, `i:+5;`, `i:-0;`, `s:01:"a";`, "a:1:{i:0;a:1:{i:0;O:1:\"A\":1:{s:4:\"\x00*\x00p\";r:3;}}}",
		`a:2:{i:0;a:1:{i:0;O:1:"A":0:{}}i:1;r:3;}`, `a:3:{i:0;i:1;i:1;R:2;i:0;i:3;}`,
	)
	for _, tc := range []string{
		`O:8:"stdClass":1:{N;i:1;}`, `a:0:{};`, `a:1:{i:0;i:1;};`, `N;N;`, `b:0;x`, `r:1;`, `R:1;`,
	} {
		seeds = append(seeds, tc)
	}
	// WSGATE_DIFF_N / WSGATE_DIFF_SEED scale and vary the mutation run for
	// a longer hunt; the defaults keep the test under a second.
	n, seed := 30000, uint64(1)
	if v, err := strconv.Atoi(os.Getenv("WSGATE_DIFF_N")); err == nil && v >= 0 {
		n = v
	}
	if v, err := strconv.ParseUint(os.Getenv("WSGATE_DIFF_SEED"), 10, 64); err == nil {
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	const alphabet = `0123456789:;{}"NbidsSaOCErR-+.eINFA\|`
	inputs := append([]string(nil), seeds...)
	for range n {
		b := []byte(seeds[rng.IntN(len(seeds))])
		for range 1 + rng.IntN(3) {
			switch op := rng.IntN(5); {
			case op == 0 && len(b) > 0: // replace a byte
				b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
			case op == 1: // insert a byte
				i := rng.IntN(len(b) + 1)
				b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
			case op == 2 && len(b) > 0: // delete a byte
				i := rng.IntN(len(b))
				b = append(b[:i], b[i+1:]...)
			case op == 3 && len(b) > 0: // truncate
				b = b[:rng.IntN(len(b))]
			default: // splice in a piece of another seed
				o := seeds[rng.IntN(len(seeds))]
				if len(o) > 0 {
					j := rng.IntN(len(o))
					k := j + rng.IntN(len(o)-j) + 1
					i := rng.IntN(len(b) + 1)
					b = append(b[:i], append([]byte(o[j:k]), b[i:]...)...)
				}
			}
		}
		inputs = append(inputs, string(b))
	}
	// WSGATE_DIFF_CORPUS names a directory of Go fuzz corpus files, e.g.
	// $(go env GOCACHE)/fuzz/github.com/wsgate/wsgate/phpsession/FuzzUnserialize,
	// whose inputs are checked too.
	if dir := os.Getenv("WSGATE_DIFF_CORPUS"); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			if in, ok := readCorpusBytes(f); ok {
				inputs = append(inputs, in)
			}
		}
	}
	return inputs
}

// readCorpusBytes extracts the []byte argument of a "go test fuzz v1" file.
func readCorpusBytes(path string) (string, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if lit, ok := strings.CutPrefix(line, "[]byte("); ok {
			if s, err := strconv.Unquote(strings.TrimSuffix(lit, ")")); err == nil {
				return s, true
			}
		}
	}
	return "", false
}

// TestDifferentialRandomPHP has PHP generate random nested values (every
// serialize() element, shared objects, PHP references, \Serializable
// payloads with nested serialize() and so PHP's shared back-reference
// numbering, __serialize, enums), serialize them, and unserialize them again
// with the classes loaded (test/php/random-values.php). The decoder must
// yield exactly what PHP's unserialize() did, floats bit for bit.
//
// WSGATE_DIFF_RANDOM_N (default 2000) and WSGATE_DIFF_SEED scale and vary
// the run.
func TestDifferentialRandomPHP(t *testing.T) {
	php := testenv.PHP(t)
	n, seed := 2000, 1
	if v, err := strconv.Atoi(os.Getenv("WSGATE_DIFF_RANDOM_N")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("WSGATE_DIFF_SEED")); err == nil {
		seed = v
	}
	cmd := exec.Command(php, filepath.Join("..", "test", "php", "random-values.php"), strconv.Itoa(n), strconv.Itoa(seed))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("random-values.php: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	lines, bad, refs, customs, igbinaryValues := 0, 0, 0, 0, 0
	for sc.Scan() {
		lines++
		fields := strings.Split(sc.Text(), " ")
		if len(fields) != 2 && len(fields) != 4 {
			t.Fatalf("line %d: %d fields", lines, len(fields))
		}
		in, err := hex.DecodeString(fields[0])
		want := fields[1]
		if err != nil {
			t.Fatalf("line %d: bad line", lines)
		}
		if len(fields) == 4 {
			igIn, _ := hex.DecodeString(fields[2])
			igbinaryValues++
			iv, err := UnserializeIgbinary(igIn, Limits{MaxDepth: 4096})
			switch {
			case err != nil:
				bad++
				if bad <= 10 {
					t.Errorf("igbinary %x: PHP accepts %s, Go rejects: %v", igIn, fields[3], err)
				}
			case phpDumpLoaded(iv, 0) != fields[3]:
				bad++
				if bad <= 10 {
					t.Errorf("igbinary %x:\n go  %s\n php %s", igIn, phpDumpLoaded(iv, 0), fields[3])
				}
			}
		}
		if bytes.Contains(in, []byte("R:")) || bytes.Contains(in, []byte("r:")) {
			refs++
		}
		if bytes.Contains(in, []byte("C:")) {
			customs++
		}
		v, err := Unserialize(in, Limits{MaxDepth: 4096})
		if err != nil {
			bad++
			if bad <= 10 {
				t.Errorf("input %q: PHP accepts %s, Go rejects: %v", in, want, err)
			}
			continue
		}
		if got := phpDumpLoaded(v, 0); got != want {
			bad++
			if bad <= 10 {
				t.Errorf("input %q:\n go  %s\n php %s", in, got, want)
			}
		}
	}
	if lines != n {
		t.Fatalf("PHP wrote %d values, want %d", lines, n)
	}
	t.Logf("%d random values (%d with back-references, %d with C: payloads; %d also through igbinary), %d mismatches", lines, refs, customs, igbinaryValues, bad)
}

// phpDumpLoaded renders v like random-values.php renders PHP's
// unserialize() with its classes loaded: WsgSer (Serializable) exposes its
// decoded payload as property d, WsgMagic (__unserialize) keeps the whole
// data array in x, enums print as E<Class:Case>.
func phpDumpLoaded(v *Value, depth int) string {
	if depth > 6 {
		return "~"
	}
	d := v.Deref()
	switch d.Kind() {
	case Custom:
		inner := "N"
		if in := d.Inner(); in != nil {
			inner = phpDumpLoaded(in, depth+1)
		}
		return "O" + hex.EncodeToString([]byte(d.Class())) + "[s64=" + inner + ",]"
	case Object:
		if d.Class() == "WsgMagic" {
			arr := &Value{kind: Array, items: d.items}
			return "O" + hex.EncodeToString([]byte(d.Class())) + "[s78=" + phpDumpLoadedArray(arr, depth+1) + ",]"
		}
		return phpDumpLoadedArray(d, depth)
	case Array:
		return phpDumpLoadedArray(d, depth)
	}
	return phpDump(d, depth)
}

// phpDumpLoadedArray is phpDump's array/object rendering recursing into
// phpDumpLoaded.
func phpDumpLoadedArray(v *Value, depth int) string {
	if depth > 6 {
		return "~"
	}
	order, vals := phpEntries(v)
	var b strings.Builder
	if v.Kind() == Object {
		b.WriteString("O" + hex.EncodeToString([]byte(v.Class())))
	}
	b.WriteString("[")
	for _, ks := range order {
		b.WriteString(ks + "=" + phpDumpLoaded(vals[ks], depth+1) + ",")
	}
	b.WriteString("]")
	return b.String()
}
