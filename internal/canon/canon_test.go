package canon

import (
	"errors"
	"path"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestCheckPath(t *testing.T) {
	for _, c := range []struct {
		name, in string
		ok       bool
	}{
		{"root", "/", true},
		{"plain", "/prod/secrets/db.env", true},
		{"case is kept", "/Team/Roadmap.md", true},
		{"hidden file", "/.config/x", true},
		{"inner space", "/a b/c d.md", true},
		{"NFC accent", "/docs/caf\u00e9.md", true},
		{"CJK", "/文書/ノート.md", true},
		{"empty", "", false},
		{"relative", "prod/secrets", false},
		{"leading space", " /prod/secrets/db.env", false},
		{"leading tab", "\t/prod/secrets/db.env", false},
		{"leading newline", "\n/prod/secrets/db.env", false},
		{"trailing space", "/prod/secrets/db.env ", false},
		{"trailing newline", "/prod/secrets/db.env\n", false},
		{"NUL", "/prod/secrets/db.env\x00", false},
		{"DEL", "/prod/\x7fsecrets", false},
		{"double slash", "/prod//secrets", false},
		{"leading double slash", "//prod/secrets", false},
		{"trailing slash", "/prod/secrets/", false},
		{"dot segment", "/prod/./secrets", false},
		{"dot-dot segment", "/public/../prod/secrets", false},
		{"final dot-dot", "/prod/secrets/..", false},
		{"trailing dot", "/prod/secrets.", false},
		{"segment with a trailing dot", "/prod/secrets./db.env", false},
		{"segment with a leading space", "/prod/ secrets", false},
		{"segment with a trailing space", "/prod /secrets", false},
		{"backslash", "/prod\\secrets", false},
		{"percent-encoding", "/prod%2Fsecrets", false},
		{"double percent-encoding", "/prod%252Fsecrets", false},
		{"fullwidth solidus", "/prod\uff0fsecrets", false},
		{"division slash", "/prod\u2215secrets", false},
		{"fraction slash", "/prod\u2044secrets", false},
		{"big solidus", "/prod\u29f8secrets", false},
		{"set minus", "/prod\u2216secrets", false},
		{"one dot leader", "/prod/secrets\u2024/x", false},
		{"fullwidth full stop", "/prod/db\uff0eenv", false},
		{"zero-width space", "/prod/secr\u200bets", false},
		{"zero-width joiner", "/prod/\u200dsecrets", false},
		{"bidi override", "\u202e/prod/secrets", false},
		{"bidi isolate", "/prod/\u2066secrets", false},
		{"byte order mark", "/\ufeffprod/secrets", false},
		{"soft hyphen", "/prod/se\u00adcrets", false},
		{"long s folds to s", "/prod/\u017fecrets", false},
		{"Kelvin sign folds to k", "/\u212aeys", false},
		{"fullwidth letter", "/\uff50rod/secrets", false},
		{"ligature", "/\ufb01les", false},
		{"mathematical letter", "/\U0001d429rod", false},
		{"no-break space", "\u00a0/prod/secrets", false},
		{"ideographic space", "/prod\u3000/secrets", false},
		{"line separator", "/prod\u2028/secrets", false},
		{"private use", "/prod/\ue000", false},
		{"replacement character", "/prod/\ufffd", false},
		{"noncharacter", "/prod/\ufdd0", false},
		{"invalid UTF-8", "/prod/\xff", false},
		{"NFD accent", "/docs/cafe\u0301.md", false},
		{"Angstrom sign (NFC changes it)", "/\u212b", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Check(KindPath, c.in)
			if (err == nil) != c.ok {
				t.Fatalf("Check(path, %q) = %v, want ok=%v", c.in, err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrNotCanonical) {
				t.Fatalf("error %v does not wrap ErrNotCanonical", err)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"a", true}, {"platform/api", true}, {"credentials/aws-rotate", true}, {"#eng", true}, {"PLAT-102", true},
		{"bob@example.com", true}, {"", false}, {"/a", false}, {"a/", false}, {"a//b", false}, {"../a", false},
		{"a/..", false}, {" a", false}, {"a ", false}, {"a\\b", false}, {"a%2fb", false}, {"a.", false}, {".", false},
	} {
		if err := Check(KindName, c.in); (err == nil) != c.ok {
			t.Errorf("Check(name, %q) = %v, want ok=%v", c.in, err, c.ok)
		}
	}
}

func TestCheckRef(t *testing.T) {
	for in, ok := range map[string]bool{"/a/b": true, "a/b": true, "/a/": false, "a/../b": false, "": false, "/": true} {
		if err := Check(KindRef, in); (err == nil) != ok {
			t.Errorf("Check(ref, %q) = %v, want ok=%v", in, err, ok)
		}
	}
	if err := Check(Kind("url"), "/a"); err == nil || errors.Is(err, ErrNotCanonical) {
		t.Errorf("an unknown kind: %v", err)
	}
}

// TestPatternsMatchRefused: the generated classes (policy's copy) refuse
// exactly what Refused refuses.
func TestPatternsMatchRefused(t *testing.T) {
	refused := regexp.MustCompile(RefusedPattern())
	ascii := regexp.MustCompile(ASCIIPattern())
	for r := rune(0); r <= 0x3ffff; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		s := string(r)
		if got := refused.MatchString(s); got != Refused(r) {
			t.Fatalf("RefusedPattern matches %U: %v, Refused: %v", r, got, Refused(r))
		}
		if got, want := ascii.MatchString(s), r < 0x80 && !Refused(r); got != want {
			t.Fatalf("ASCIIPattern matches %U: %v, want %v", r, got, want)
		}
	}
}

// FuzzCheck: whatever Check accepts is a fixed point of every
// reinterpretation a backend might apply — trimming, cleaning, decoding,
// NFC/NFKC, separators — so a backend reads the same path policy decided
// on; and it is linear (no panics, one pass).
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"/", "/a/b", " /prod/secrets/db.env", "/a/../b", "/a%2fb", "/prod\uff0fsecrets", "a/b", "/caf\u00e9", "/a\u200b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, k := range []Kind{KindPath, KindName, KindRef} {
			if err := Check(k, s); err != nil {
				if !errors.Is(err, ErrNotCanonical) {
					t.Fatalf("Check(%s, %q): %v does not wrap ErrNotCanonical", k, s, err)
				}
				continue
			}
			if !utf8.ValidString(s) || strings.TrimSpace(s) != s || strings.ContainsAny(s, "\\%\x00") {
				t.Fatalf("Check(%s) accepted %q", k, s)
			}
			if norm.NFC.String(s) != s || norm.NFKC.String(s) != s {
				t.Fatalf("Check(%s) accepted %q, which Unicode normalization changes", k, s)
			}
			if HasRefused(s) {
				t.Fatalf("Check(%s) accepted %q, which holds a refused character", k, s)
			}
			rooted := s
			if !strings.HasPrefix(rooted, "/") {
				rooted = "/" + rooted
			}
			if path.Clean(rooted) != rooted {
				t.Fatalf("Check(%s) accepted %q, which path.Clean changes", k, s)
			}
			for seg := range strings.SplitSeq(strings.TrimPrefix(rooted, "/"), "/") {
				if seg != strings.TrimSpace(seg) && rooted != "/" || strings.HasSuffix(seg, ".") {
					t.Fatalf("Check(%s) accepted %q: segment %q", k, s, seg)
				}
			}
		}
	})
}
