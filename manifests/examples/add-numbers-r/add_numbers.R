# Adds two numbers: list(a = 3, b = 5) -> 8.
add <- function(args) {
  args$a + args$b
}
