""""No Prior, No Leakage" (arXiv 2509.21296): the merge/split transforms that build other KKT-consistent
training sets (`transforms`), how far a split reaches with the residual kept (`split`), and whether
reconstructions are copies of training points or only typical of the distribution (`chance`)."""
