package child

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RoleEnv names the environment variable that selects a child's role.
const RoleEnv = "PULSE_BENCH_ROLE"

type envelope struct {
	Kind string          `json:"k"`           // progress, msg, result, error
	Text string          `json:"t,omitempty"` // progress and error text
	Data json.RawMessage `json:"d,omitempty"`
}

// Role is the body of a child process. It returns the result to send to
// the parent (nil for none).
type Role func(ctx context.Context, c *Conn) (any, error)

// Main runs the role named in the environment, if any, and reports
// whether this process was a child (and its exit code).
func Main(roles map[string]Role) (isChild bool, code int) {
	name := os.Getenv(RoleEnv)
	if name == "" {
		return false, 0
	}
	role, ok := roles[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench child: unknown role %q\n", name)
		return true, 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	go func() {
		select {
		case <-sig:
			cancel()
		case <-ctx.Done():
		}
	}()
	c := &Conn{out: json.NewEncoder(os.Stdout), cmds: make(chan json.RawMessage, 64), cancel: cancel}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	first, err := in.ReadBytes('\n')
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s: reading input: %v\n", name, err)
		return true, 2
	}
	c.input = first
	go c.readCommands(in)
	res, err := safeRun(ctx, role, c)
	if err != nil {
		c.send(envelope{Kind: "error", Text: err.Error()})
		return true, 1
	}
	b, err := json.Marshal(res)
	if err != nil {
		c.send(envelope{Kind: "error", Text: "marshalling the result: " + err.Error()})
		return true, 1
	}
	c.send(envelope{Kind: "result", Data: b})
	return true, 0
}

func safeRun(ctx context.Context, role Role, c *Conn) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return role(ctx, c)
}

// Conn is a child's side of the pipe.
type Conn struct {
	mu     sync.Mutex
	out    *json.Encoder
	input  []byte
	cmds   chan json.RawMessage
	cancel context.CancelFunc
}

func (c *Conn) readCommands(in *bufio.Reader) {
	defer close(c.cmds)
	defer c.cancel() // stdin closed: the parent is done with us
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 1 {
			c.cmds <- json.RawMessage(line)
		}
		if err != nil {
			return
		}
	}
}

func (c *Conn) send(e envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.out.Encode(e)
}

// Input decodes the role's input.
func (c *Conn) Input(v any) error { return json.Unmarshal(c.input, v) }

// Progress sends a progress line for the parent to print.
func (c *Conn) Progress(format string, args ...any) {
	c.send(envelope{Kind: "progress", Text: fmt.Sprintf(format, args...)})
}

// Send sends one message to the parent.
func (c *Conn) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.send(envelope{Kind: "msg", Data: b})
	return nil
}

// Commands delivers the parent's commands (one JSON value each); it is
// closed when stdin closes, at which point the role's context is
// cancelled too.
func (c *Conn) Commands() <-chan json.RawMessage { return c.cmds }

// Proc is the parent's handle on a child.
type Proc struct {
	Name     string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	msgs     chan json.RawMessage
	result   chan envelope
	progress func(string)
	done     chan struct{}
	waitErr  error
	inMu     sync.Mutex
	closed   bool
}

// Start runs this executable as a child in role, with input as its first
// stdin line. progress receives the child's progress lines; the child's
// stderr goes to logPath (appended) when set, else to this stderr.
func Start(ctx context.Context, role, name string, input any, logPath string, progress func(string)) (*Proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(input)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), RoleEnv+"="+role)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child has its own descriptor once started
		cmd.Stderr = f
	} else {
		cmd.Stderr = os.Stderr
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(string) {}
	}
	p := &Proc{Name: name, cmd: cmd, stdin: stdin, msgs: make(chan json.RawMessage, 1024),
		result: make(chan envelope, 1), progress: progress, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting child %s: %w", name, err)
	}
	if _, err := stdin.Write(append(in, '\n')); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("child %s: writing input: %w", name, err)
	}
	go p.read(stdout)
	go func() {
		select {
		case <-ctx.Done():
			p.Kill()
		case <-p.done:
		}
	}()
	return p, nil
}

func (p *Proc) read(r io.Reader) {
	defer close(p.done)
	defer close(p.msgs)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var final envelope
	for sc.Scan() {
		var e envelope
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			p.progress("(unparsed) " + sc.Text())
			continue
		}
		switch e.Kind {
		case "progress":
			p.progress(e.Text)
		case "msg":
			p.msgs <- e.Data
		case "result", "error":
			final = e
		}
	}
	p.waitErr = p.cmd.Wait()
	if final.Kind == "" {
		final = envelope{Kind: "error", Text: fmt.Sprintf("exited without a result (%v)", p.waitErr)}
	}
	p.result <- final
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Send writes one command line to the child.
func (p *Proc) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.closed {
		return errors.New("child: stdin closed")
	}
	_, err = p.stdin.Write(append(b, '\n'))
	return err
}

// Next returns the child's next message, decoded into v.
func (p *Proc) Next(ctx context.Context, v any) error {
	select {
	case m, ok := <-p.msgs:
		if !ok {
			return fmt.Errorf("child %s: ended", p.Name)
		}
		return json.Unmarshal(m, v)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseInput closes the child's stdin: a role that runs until told to stop
// then finishes and sends its result.
func (p *Proc) CloseInput() {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if !p.closed {
		p.closed = true
		_ = p.stdin.Close()
	}
}

// Result waits for the child's result (decoded into v) and its exit.
func (p *Proc) Result(ctx context.Context, v any) error {
	select {
	case e := <-p.result:
		p.result <- e // keep it for a second call
		if e.Kind == "error" {
			return fmt.Errorf("child %s: %s", p.Name, e.Text)
		}
		if v == nil {
			return nil
		}
		return json.Unmarshal(e.Data, v)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop closes stdin and waits up to grace for the child to exit, then
// kills it.
func (p *Proc) Stop(grace time.Duration) {
	p.CloseInput()
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
		<-p.done
	}
}

// Kill kills the child at once.
func (p *Proc) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
}

// Done is closed once the child has exited and its output is read.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Runner starts children with a common log directory and prints progress
// lines with the elapsed time.
type Runner struct {
	LogDir string
	Out    io.Writer
	Start0 time.Time
	mu     sync.Mutex
}

// Printf prints one progress line.
func (r *Runner) Printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	el := time.Since(r.Start0).Round(time.Second)
	fmt.Fprintf(r.Out, "[%02d:%02d] %s\n", int(el.Minutes()), int(el.Seconds())%60, fmt.Sprintf(format, args...))
}

// Run starts a child whose progress lines are printed with its name.
func (r *Runner) Run(ctx context.Context, role, name string, input any) (*Proc, error) {
	log := ""
	if r.LogDir != "" {
		log = r.LogDir + "/" + sanitize(name) + ".log"
	}
	return Start(ctx, role, name, input, log, func(line string) {
		r.Printf("  %s: %s", name, strings.TrimPrefix(line, name+": "))
	})
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}
