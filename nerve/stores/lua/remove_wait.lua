-- Forget wait ARGV[3] under prefix ARGV[1]; ARGV[2] is the window in ms. 1 if it existed.
return unwait(ARGV[1], ARGV[3], ARGV[2])
