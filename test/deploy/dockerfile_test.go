package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN …
	args string
}

// stage is one FROM … of a multi-stage Dockerfile.
type stage struct {
	image, name string
	steps       []instruction
}

func parseDockerfile(t *testing.T, data []byte) []stage {
	t.Helper()
	var stages []stage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			return
		}
		if len(stages) == 0 {
			t.Fatalf("%s before the first FROM", in.cmd)
		}
		stages[len(stages)-1].steps = append(stages[len(stages)-1].steps, in)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

// makeBuildCommand is the command `make build` runs, from make's dry run.
func makeBuildCommand(t *testing.T) string {
	t.Helper()
	// --no-print-directory: run from `make test`, the inherited MAKELEVEL
	// would make it print "Entering directory" lines around the command.
	cmd := exec.CommandContext(t.Context(), "make", "--no-print-directory", "-n", "build")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make -n build: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "go build ") {
		t.Fatalf("make -n build = %q: want the one go build command", out)
	}
	return lines[0]
}

// TestDockerfile checks what can be checked without a Docker engine: the
// build stage runs `make build` (the Makefile's go build, -ldflags and
// all) with CGO_ENABLED=0, the final stage is distroless/static and runs
// as a non-root user, and the binary it copies is the one make builds.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, data)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(stages))
	}
	final := stages[len(stages)-1]
	if !regexp.MustCompile(`^gcr\.io/distroless/static-debian\d+:nonroot(@sha256:[0-9a-f]{64})?$`).MatchString(final.image) {
		t.Errorf("final stage FROM %s: want gcr.io/distroless/static-debianN:nonroot (the binary is static)", final.image)
	}
	var user, copyFrom, copySrc, copyDst string
	var entrypoint []string
	for _, in := range final.steps {
		switch in.cmd {
		case "USER":
			user = in.args
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				copyFrom, copySrc, copyDst = strings.TrimPrefix(f[0], "--from="), f[1], f[2]
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entrypoint); err != nil {
				t.Errorf("ENTRYPOINT %s: want the exec (JSON) form: %v", in.args, err)
			}
		case "RUN":
			t.Errorf("RUN in the final stage (%s): distroless has no shell", in.args)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("final stage USER %q: want a non-root user (65532, distroless's nonroot)", user)
	}
	if len(entrypoint) == 0 || entrypoint[0] != copyDst {
		t.Errorf("ENTRYPOINT %q does not run the copied binary %s", entrypoint, copyDst)
	}

	// The stage the binary comes from builds it with make build.
	var build *stage
	for i := range stages {
		if stages[i].name == copyFrom {
			build = &stages[i]
		}
	}
	if build == nil {
		t.Fatalf("COPY --from=%s names no stage", copyFrom)
	}
	makeCmd := makeBuildCommand(t)
	out := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(makeCmd)
	if out == nil {
		t.Fatalf("make build's command %q has no -o", makeCmd)
	}
	if copySrc != "/src/"+out[1] || !hasStep(build, "WORKDIR", "/src") {
		t.Errorf("the final stage copies %s; make build writes %s in WORKDIR /src", copySrc, out[1])
	}
	if !hasStepMatching(build, "RUN", regexp.MustCompile(`(^|&&|\s)make build(\s|&&|$)`)) {
		t.Error("the build stage does not RUN make build: the image would not be the Makefile's build")
	}
	if hasStepMatching(build, "RUN", regexp.MustCompile(`\bgo build\b`)) {
		t.Error("the build stage runs go build itself: call make build, so image and Makefile cannot drift")
	}
	if !hasStepMatching(build, "ENV", regexp.MustCompile(`(^|\s)CGO_ENABLED=0(\s|$)`)) {
		t.Error("the build stage does not set CGO_ENABLED=0: distroless/static has no libc for a cgo binary")
	}
	if !strings.HasPrefix(build.image, "golang:") {
		t.Errorf("build stage FROM %s: want the golang image", build.image)
	} else if goMod, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
		m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(goMod)
		if m == nil || !strings.HasPrefix(strings.TrimPrefix(build.image, "golang:"), string(m[1])+"-") {
			t.Errorf("build stage FROM %s: want golang:%s-… (go.mod's go line)", build.image, m[1])
		}
	}

	// .dockerignore keeps .git (git describe stamps the version) and every
	// tracked file (a missing one would stamp -dirty).
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(ignore), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, ".git") {
			t.Errorf(".dockerignore drops %s: make build's git describe needs the repository", l)
		}
		p := strings.Trim(l, "/")
		check := exec.CommandContext(t.Context(), "git", "ls-files", "--", p)
		check.Dir = root
		if tracked, err := check.Output(); err == nil && len(bytes.TrimSpace(tracked)) > 0 {
			t.Errorf(".dockerignore drops tracked files (%s): the build would be stamped -dirty", l)
		}
	}
}

func hasStep(s *stage, cmd, args string) bool {
	for _, in := range s.steps {
		if in.cmd == cmd && in.args == args {
			return true
		}
	}
	return false
}

func hasStepMatching(s *stage, cmd string, re *regexp.Regexp) bool {
	for _, in := range s.steps {
		if in.cmd == cmd && re.MatchString(in.args) {
			return true
		}
	}
	return false
}

// TestStaticBuild runs the Makefile's go build with CGO_ENABLED=0, as the
// Dockerfile does, into a temporary file, and checks that the binary is
// static (no ELF interpreter, no shared libraries): what distroless/static
// can run.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	makeCmd := makeBuildCommand(t)
	const out = "-o bin/credbroker "
	if !strings.Contains(makeCmd, out) {
		t.Fatalf("make build's command %q has no %q", makeCmd, out)
	}
	bin := filepath.Join(t.TempDir(), "credbroker")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", strings.Replace(makeCmd, out, "-o "+bin+" ", 1))
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 %s: %v\n%s", makeCmd, err, b)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	if v, err := exec.CommandContext(ctx, bin, "version").Output(); err != nil || !strings.HasPrefix(string(v), "credbroker ") {
		t.Errorf("%s version = %q, %v", bin, v, err)
	}
}
