// Package lua holds numberd's Redis scripts, one file each, with the KEYS and ARGV
// they take described at their top. They are embedded here because go:embed cannot
// reach a parent directory from the engine's package.
package lua

import _ "embed"

//go:embed identity.lua
var identity string

// The scripts' sources. Those that read or write a pool's state begin with
// identity.lua, the one definition of what makes a state this server's own.
var (
	//go:embed allocate.lua
	allocate string
	Allocate = identity + allocate
	//go:embed seed.lua
	seed string
	Seed = identity + seed
	//go:embed lease.lua
	lease string
	Lease = identity + lease
	//go:embed add.lua
	add string
	Add = identity + add
	//go:embed retire.lua
	retire string
	Retire = identity + retire
	//go:embed peek.lua
	peek string
	Peek = identity + peek
	//go:embed resolve.lua
	Resolve string
	//go:embed orphans.lua
	Orphans string
	//go:embed lock.lua
	Lock string
	//go:embed unlock.lua
	Unlock string
)
