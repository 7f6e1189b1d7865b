package peers

import "flag"

// Update is -update: rewrite the golden files in testdata/ (configs here, daemon
// outputs in TestInterop, which needs PRIVILEGED_TESTS=1).
var Update = flag.Bool("update", false, "rewrite testdata/: golden configs, and daemon outputs recorded by TestInterop")
