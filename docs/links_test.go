package docs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The project's files must stand alone: a user has the repository and
// nothing beside it. TestLinksStayInRepository fails when a Markdown file
// links to a path that is not a file of the repository, and when any text
// file mentions the internal folder next to the checkout.

// skipDirs are folders whose files are not the project's own text: build
// output, dependencies, local data and test fixtures.
var skipDirs = []string{".git", "node_modules", ".data", "dist", "testdata"}

// outsideMentions are strings that point outside the repository. They are
// split so that this file does not mention them itself.
var outsideMentions = []string{"../" + "shared/", "/work/" + "shared"}

func TestLinksStayInRepository(t *testing.T) {
	root := moduleRoot(t)
	files := repositoryFiles(t, root)
	if !slices.Contains(files, "README.md") {
		t.Fatalf("README.md is not among the %d files found under %s: the walk is broken", len(files), root)
	}
	var markdown int
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted in the working tree, not yet committed
			}
			t.Fatal(err)
		}
		if !isText(data) {
			continue
		}
		for _, p := range mentionsOutside(data) {
			t.Errorf("%s:%d mentions %q, a path outside the repository that users of the project do not have: link to a file of the repository (docs/api.md is the contract)", name, p.line, p.text)
		}
		if strings.HasSuffix(strings.ToLower(name), ".md") {
			markdown++
			for _, l := range markdownLinks(data) {
				if err := checkLink(root, files, name, l.target); err != nil {
					t.Errorf("%s:%d: link %q: %v", name, l.line, l.target, err)
				}
			}
		}
	}
	if markdown < 3 {
		t.Fatalf("only %d Markdown files found: the walk is broken", markdown)
	}
}

// TestLinkCheckerCatches proves the checks above can fail: each bad link or
// mention here must be reported, and each good one must not.
func TestLinkCheckerCatches(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"README.md", "docs/api.md", "docs/openapi.yaml", "internal/doc.go"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An existing file that is not one of the repository's (ignored, say).
	if err := os.WriteFile(filepath.Join(root, "secret.md"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md", "docs/api.md", "docs/openapi.yaml", "internal/doc.go"}

	bad := map[string]string{
		"../" + "shared/DESIGN.md": "README.md",
		"../outside.md":            "README.md",
		"../../README.md":          "docs/api.md",
		"docs/missing.md":          "README.md",
		"api.md":                   "README.md", // relative to README's folder, not docs/
		"/etc/passwd":              "README.md",
		"secret.md":                "README.md",
		"internal/nothing/":        "README.md",
		"docs%2F..%2F..%2Fx.md":    "README.md",
	}
	for target, from := range bad {
		if err := checkLink(root, files, from, target); err == nil {
			t.Errorf("link %q in %s was accepted; it leaves the repository or names no file of it", target, from)
		}
	}
	good := map[string]string{
		"docs/api.md":                   "README.md",
		"docs/api.md#publish":           "README.md",
		"./docs/openapi.yaml":           "README.md",
		"../README.md":                  "docs/api.md",
		"openapi.yaml":                  "docs/api.md",
		"internal/":                     "README.md",
		"internal":                      "README.md",
		"#quick-start":                  "README.md",
		"https://example.com/x":         "README.md",
		"http://localhost:8080/console": "README.md",
		"mailto:ops@example.com":        "README.md",
	}
	for target, from := range good {
		if err := checkLink(root, files, from, target); err != nil {
			t.Errorf("link %q in %s was refused: %v", target, from, err)
		}
	}

	md := "# T\n" +
		"See [the contract](../" + "shared/DESIGN.md) and ![img](docs/x.png \"title\").\n" +
		"[ref]: ../ref.md\n" +
		"<a href=\"../html.md\">x</a> <img src='pic.png'>\n" +
		"`[code](../in-code-span.md)` and ``<a href=\"/span\">``\n" +
		"```sh\n[fenced](../in-fence.md)\n```\n" +
		"~~~\n<a href=\"../in-tilde-fence.md\">\n~~~\n" +
		"[angle](<docs/with space.md>) [nested [brackets]](docs/api.md)\n"
	var got []string
	for _, l := range markdownLinks([]byte(md)) {
		got = append(got, fmt.Sprintf("%d:%s", l.line, l.target))
	}
	want := []string{
		"2:../" + "shared/DESIGN.md", "2:docs/x.png", "3:../ref.md", "4:../html.md", "4:pic.png",
		"12:docs/with space.md", "12:docs/api.md",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("markdownLinks found\n  %v\nwant\n  %v", got, want)
	}

	if m := mentionsOutside([]byte("ok\nsee /work/" + "shared/DESIGN.md\n")); len(m) != 1 || m[0].line != 2 {
		t.Errorf("mentionsOutside missed a mention on line 2: %v", m)
	}
	if m := mentionsOutside([]byte("docs/api.md and ../README.md\n")); len(m) != 0 {
		t.Errorf("mentionsOutside reported paths inside the repository: %v", m)
	}
}

// moduleRoot walks up from the test's folder to the one holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}

// repositoryFiles lists the repository's files, slash-separated and relative
// to root: what git tracks or would track (new files included, ignored ones
// not), or, without git, every file under root. Files under skipDirs are
// left out.
func repositoryFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		for _, f := range strings.Split(string(out), "\x00") {
			if f != "" && !skipped(f) {
				files = append(files, f)
			}
		}
	} else {
		t.Logf("git ls-files failed (%v); walking %s instead", err, root)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				if rel != "." && slices.Contains(skipDirs, d.Name()) {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(files)
	return slices.Compact(files)
}

// skipped reports whether a slash-separated path lies under one of skipDirs.
func skipped(name string) bool {
	parts := strings.Split(name, "/")
	for _, p := range parts[:len(parts)-1] {
		if slices.Contains(skipDirs, p) {
			return true
		}
	}
	return false
}

// isText reports whether data looks like text: no NUL byte near its start.
func isText(data []byte) bool {
	return !bytes.Contains(data[:min(len(data), 8000)], []byte{0})
}

type mention struct {
	line int
	text string
}

// mentionsOutside returns where data mentions a path outside the repository.
func mentionsOutside(data []byte) []mention {
	var found []mention
	for i, line := range strings.Split(string(data), "\n") {
		for _, m := range outsideMentions {
			if strings.Contains(line, m) {
				found = append(found, mention{line: i + 1, text: m})
			}
		}
	}
	return found
}

type link struct {
	line   int
	target string
}

var (
	// [text](target) and ![alt](target), with an optional "title"; the
	// target may be in angle brackets, which allows spaces.
	inlineLink = regexp.MustCompile(`\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)`)
	// [ref]: target
	refLink = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)`)
	// <a href="target">, <img src="target">
	htmlLink = regexp.MustCompile(`(?i)<(?:a|img|link|source)\b[^>]*?\s(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))`)
)

// markdownLinks returns the link targets of a Markdown document, with their
// line numbers, leaving out fenced code blocks and code spans, which show
// text rather than link to anything.
func markdownLinks(src []byte) []link {
	var links []link
	fence := ""
	for i, line := range strings.Split(string(src), "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t") == "" {
				fence = ""
			}
			continue
		}
		if len(line)-len(trimmed) < 4 {
			for _, f := range []string{"```", "~~~"} {
				if strings.HasPrefix(trimmed, f) {
					fence = trimmed[:len(trimmed)-len(strings.TrimLeft(trimmed, f[:1]))]
				}
			}
			if fence != "" {
				continue
			}
		}
		line = stripCodeSpans(line)
		add := func(target string) {
			target = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">"))
			if target != "" {
				links = append(links, link{line: i + 1, target: target})
			}
		}
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			add(m[1])
		}
		if m := refLink.FindStringSubmatch(line); m != nil {
			add(m[1])
		}
		for _, m := range htmlLink.FindAllStringSubmatch(line, -1) {
			add(m[1] + m[2] + m[3])
		}
	}
	return links
}

// stripCodeSpans removes the code spans of a line: a run of backticks, up
// to the next run of as many. A run that is never closed is literal text.
func stripCodeSpans(line string) string {
	var out strings.Builder
	for {
		start := strings.IndexByte(line, '`')
		if start < 0 {
			out.WriteString(line)
			return out.String()
		}
		n := len(line[start:]) - len(strings.TrimLeft(line[start:], "`"))
		out.WriteString(line[:start])
		rest := line[start+n:]
		closed := false
		for i := 0; i < len(rest); {
			if rest[i] != '`' {
				i++
				continue
			}
			m := len(rest[i:]) - len(strings.TrimLeft(rest[i:], "`"))
			if m == n {
				line, closed = rest[i+m:], true
				break
			}
			i += m
		}
		if !closed {
			out.WriteString(line[start : start+n])
			line = rest
		}
	}
}

// scheme matches a URL's scheme: http:, https:, mailto:, …
var scheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// checkLink reports why target, a link in the Markdown file from (relative
// to root, slash-separated), does not lead to one of files or to a folder
// holding some of them. URLs with a scheme and in-page anchors are not
// checked: they do not name a path of the repository.
func checkLink(root string, files []string, from, target string) error {
	if scheme.MatchString(target) || strings.HasPrefix(target, "#") {
		return nil
	}
	if strings.HasPrefix(target, "//") {
		return errors.New("a protocol-relative URL; write https:// or a path relative to this file")
	}
	p, _, _ := strings.Cut(target, "#")
	p, _, _ = strings.Cut(p, "?")
	p, err := url.PathUnescape(p)
	if err != nil {
		return fmt.Errorf("not a valid path: %v", err)
	}
	if strings.HasPrefix(p, "/") {
		return errors.New("an absolute path: it names a file of the reader's machine, or the web site's root, not of this repository; use a path relative to this file")
	}
	resolved := path.Clean(path.Join(path.Dir(from), p))
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("it resolves to %s, outside the repository: users of the project have only the repository", resolved)
	}
	if resolved == "." {
		return nil // the repository itself
	}
	if slices.Contains(files, resolved) {
		return nil
	}
	for _, f := range files {
		if strings.HasPrefix(f, resolved+"/") {
			return nil // a folder of the repository
		}
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(resolved))); err == nil {
		return fmt.Errorf("%s exists here but is not a file of the repository (ignored, or under %v)", resolved, skipDirs)
	}
	return fmt.Errorf("%s does not exist in the repository", resolved)
}
