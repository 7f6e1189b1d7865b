package lab_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
)

// TestStaleLabRemoved runs a helper process that builds a lab with a running process in
// it and is then SIGKILLed, so it never closes the lab. The next New must kill the
// leftover process and delete the leftover namespaces.
func TestStaleLabRemoved(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "ip", "sleep")

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LAB_ORPHAN_HELPER=1")
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	defer cmd.Process.Kill()

	var prefix, cgroup string
	var sleeper, cgSleeper int
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "ORPHAN %s %d %s %d", &prefix, &sleeper, &cgroup, &cgSleeper); err == nil {
			break
		}
	}
	if prefix == "" {
		t.Fatalf("helper did not report its lab: %v", lines.Err())
	}
	// Check while the helper lives: once it is dead, any process's New may clean up.
	if n := len(netnsInodes(t, prefix)); n != 2 || !running(sleeper) {
		t.Fatalf("helper's lab: %d namespaces with prefix %s (want 2), sleeper running %v (want true)", n, prefix, running(sleeper))
	}
	if procs, err := os.ReadFile(filepath.Join(cgroup, "cgroup.procs")); err != nil || strings.TrimSpace(string(procs)) != strconv.Itoa(cgSleeper) {
		t.Fatalf("helper's cgroup %s holds %q (%v), want its sleeper %d", cgroup, procs, err, cgSleeper)
	}
	must(t, cmd.Process.Kill())
	cmd.Wait()

	start := time.Now()
	lab.ForTest(t) // New removes stale labs
	t.Logf("New with stale cleanup took %v", time.Since(start))
	if left := netnsInodes(t, prefix); len(left) != 0 {
		t.Errorf("stale namespaces left: %v", left)
	}
	if running(sleeper) || running(cgSleeper) {
		t.Errorf("processes %d, %d of the stale lab: running %v, %v", sleeper, cgSleeper, running(sleeper), running(cgSleeper))
	}
	if _, err := os.Stat(cgroup); !os.IsNotExist(err) {
		t.Errorf("stale cgroup %s: %v, want it removed", cgroup, err)
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mounts), prefix) {
		t.Errorf("the stale lab's cgroup mount is still mounted (%v)", err)
	}
}

// TestMain runs the tests, or, when started by TestStaleLabRemoved, the orphan helper.
func TestMain(m *testing.M) {
	if os.Getenv("LAB_ORPHAN_HELPER") == "1" {
		orphanLab()
		return
	}
	os.Exit(m.Run())
}

// orphanLab is the helper process of TestStaleLabRemoved: it builds a lab with a running
// process, reports it, and waits to be killed without closing the lab.
func orphanLab() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "orphan helper:", err)
		os.Exit(1)
	}
	l, err := lab.New("orphan")
	if err != nil {
		fail(err)
	}
	a, err := l.Namespace("a")
	if err != nil {
		fail(err)
	}
	b, err := l.Namespace("b")
	if err != nil {
		fail(err)
	}
	if err := l.Connect(lab.Endpoint{NS: a, Name: "eth0"}, lab.Endpoint{NS: b, Name: "eth0"}); err != nil {
		fail(err)
	}
	p, err := b.Start("sleep", "1000")
	if err != nil {
		fail(err)
	}
	cg, err := l.Cgroup("c")
	if err != nil {
		fail(err)
	}
	pc, err := b.StartInCgroup(cg, "sleep", "1000")
	if err != nil {
		fail(err)
	}
	fmt.Printf("ORPHAN %s %d %s %d\n", l.Prefix(), p.PID, cg.Path, pc.PID)
	time.Sleep(time.Minute) // killed by the parent
	fail(fmt.Errorf("not killed within a minute"))
}

// TestStaleOwnPID removes a leftover that carries this process's PID but belongs to no
// open Lab (an earlier process with the same PID), and leaves open labs alone.
func TestStaleOwnPID(t *testing.T) {
	testenv.RequirePrivileged(t)
	live := lab.ForTest(t)
	ns, err := live.Namespace("keep")
	must(t, err)
	leftover := fmt.Sprintf("sluicelab-%d-999999-old-x", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", leftover).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", leftover, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", leftover).Run() })

	must(t, lab.RemoveStale())
	if _, err := os.Stat(filepath.Join("/run/netns", leftover)); err == nil {
		t.Errorf("leftover %s not removed", leftover)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", ns.Name)); err != nil {
		t.Errorf("open lab's namespace %s removed: %v", ns.Name, err)
	}
}

// netnsInodes maps the names in /run/netns starting with prefix to their inodes.
func netnsInodes(t *testing.T, prefix string) map[string]uint64 {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	inodes := map[string]uint64{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/run/netns", e.Name()), &st); err == nil {
			inodes[e.Name()] = st.Ino
		}
	}
	return inodes
}

// nsReferences lists what still refers to the given namespace inodes: any process's
// namespace, or a thread or open file of this process.
func nsReferences(t *testing.T, inodes map[string]uint64) []string {
	t.Helper()
	want := map[string]string{}
	for name, ino := range inodes {
		want[fmt.Sprintf("net:[%d]", ino)] = name
	}
	var globs []string
	for _, g := range []string{"/proc/[0-9]*/ns/net", "/proc/self/task/*/ns/net", "/proc/self/fd/*"} {
		m, _ := filepath.Glob(g)
		globs = append(globs, m...)
	}
	var refs []string
	for _, path := range globs {
		target, err := os.Readlink(path)
		if err != nil {
			continue
		}
		if name, ok := want[target]; ok {
			refs = append(refs, path+" -> "+name)
		}
	}
	return refs
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}
