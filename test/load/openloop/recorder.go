package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/numberd/numberd/test/load/internal/record"
)

type recorder struct {
	mu  sync.Mutex
	w   *bufio.Writer
	f   *os.File
	buf []byte
}

func (r *recorder) add(data []byte) error {
	var a struct {
		Pool    string   `json:"pool"`
		Numbers []string `json:"numbers"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	runs, err := record.Runs(a.Pool, a.Numbers)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("an answer of 200 without numbers: %s", data)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = record.AppendLine(r.buf[:0], a.Pool, runs)
	_, err = r.w.Write(r.buf)
	return err
}

func (r *recorder) close() error {
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
}
