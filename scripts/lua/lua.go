// Package lua holds numberd's Redis scripts, one file each, with the KEYS and ARGV
// they take described at their top. They are embedded here because go:embed cannot
// reach a parent directory from the engine's package.
package lua

import _ "embed"

// The scripts' sources.
var (
	//go:embed allocate.lua
	Allocate string
	//go:embed seed.lua
	Seed string
	//go:embed lease.lua
	Lease string
	//go:embed add.lua
	Add string
	//go:embed retire.lua
	Retire string
	//go:embed peek.lua
	Peek string
	//go:embed lock.lua
	Lock string
	//go:embed unlock.lua
	Unlock string
)
