package harness

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
)

// RaceReport returns the race detector's first report in logs, with what follows
// it, or "".
func RaceReport(logs []string) string {
	for i, l := range logs {
		if strings.Contains(l, "WARNING: DATA RACE") {
			return strings.Join(logs[i:min(len(logs), i+60)], "\n")
		}
	}
	return ""
}

// Tail returns the last n of lines.
func Tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// lineLog collects a process's output line by line and reports the address of the
// first JSON log line whose msg is "listening".
type lineLog struct {
	mu        sync.Mutex
	partial   []byte
	lines     []string
	listening chan string
	found     bool
}

func newLineLog() *lineLog { return &lineLog{listening: make(chan string, 1)} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.add(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.add(string(l.partial))
		l.partial = nil
	}
}

// add keeps line; called with l.mu held.
func (l *lineLog) add(line string) {
	l.lines = append(l.lines, line)
	if l.found {
		return
	}
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
		l.found = true
		l.listening <- rec.Addr
	}
}

func (l *lineLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}
