# The R worker: sources the user's file, finds the function, then answers requests.
#
# It talks to the replica agent over two dedicated pipes (by default fd 3 for requests and fd 4
# for answers), one JSON object per line, with the same protocol as the Python worker (see
# docs/workers.md), so the user's own output stays free for the logs.
#
#   Rscript worker.R --file add_numbers.R --function add

PROTOCOL_VERSION <- 1L
# Exit status when the model cannot be loaded: the agent reports the error and does not retry.
EXIT_LOAD_ERROR <- 3L

suppressPackageStartupMessages(library(jsonlite))

argument <- function(args, name, default = NULL) {
  at <- match(name, args)
  if (is.na(at) || at == length(args)) {
    if (is.null(default)) stop(sprintf("missing %s", name))
    return(default)
  }
  args[[at + 1L]]
}

encode <- function(message) {
  # auto_unbox: a length-1 vector is a JSON scalar, as callers expect; digits = NA keeps full
  # precision; null = "null" and na = "null" keep the line valid JSON.
  as.character(toJSON(message, auto_unbox = TRUE, digits = NA, null = "null", na = "null"))
}

error_of <- function(condition) {
  list(type = class(condition)[[1]], message = conditionMessage(condition))
}

main <- function() {
  args <- commandArgs(trailingOnly = TRUE)
  file <- argument(args, "--file")
  function_name <- argument(args, "--function")
  request_fd <- argument(args, "--request-fd", Sys.getenv("MODELSHIP_REQUEST_FD", "3"))
  answer_fd <- argument(args, "--answer-fd", Sys.getenv("MODELSHIP_ANSWER_FD", "4"))

  # The agent's pipes may be sockets (Node's are), which file("/dev/fd/N") cannot open; a `cat`
  # that inherits the descriptor relays them through a plain pipe, byte for byte, unbuffered.
  requests <- pipe(sprintf("exec cat <&%s", request_fd), open = "r")
  answers <- pipe(sprintf("exec cat >&%s", answer_fd), open = "w")
  send <- function(message) {
    writeLines(encode(message), answers)
    flush(answers)
  }

  model <- new.env(parent = globalenv())
  loaded <- tryCatch({
    # chdir: the model's own files (sourced helpers, saved models) resolve beside it.
    sys.source(file, envir = model, chdir = TRUE)
    candidate <- get0(function_name, envir = model, inherits = FALSE)
    if (!is.function(candidate)) {
      names <- Filter(function(name) is.function(get(name, envir = model)), ls(model))
      listed <- if (length(names)) paste(sort(names), collapse = ", ") else "none"
      stop(sprintf("function '%s' is not defined in %s; functions found: %s",
                   function_name, basename(file), listed), call. = FALSE)
    }
    candidate
  }, error = function(condition) condition)
  if (inherits(loaded, "condition")) {
    send(list(type = "load_error", error = error_of(loaded)))
    quit(save = "no", status = EXIT_LOAD_ERROR)
  }
  send(list(type = "ready", protocol = PROTOCOL_VERSION, runtime = "r"))

  repeat {
    line <- readLines(requests, n = 1L, warn = FALSE)
    if (length(line) == 0L) break # the agent closed the pipe
    if (!nzchar(trimws(line))) next
    # bigint_as_char: an integer a double cannot hold exactly (beyond 2^53, within 64 bits)
    # arrives as a string of its exact digits instead of being rounded (docs/workers.md).
    message <- fromJSON(line, simplifyVector = TRUE, bigint_as_char = TRUE)
    answer <- tryCatch({
      response <- loaded(message$request)
      encode(list(id = message$id, ok = TRUE, response = response))
    }, error = function(condition) {
      # The error goes to the replica's log too (CDSW's Monitoring pane shows it); the caller
      # gets its class and message only.
      error <- error_of(condition)
      writeLines(sprintf("Error (%s): %s", error$type, error$message), stderr())
      encode(list(id = message$id, ok = FALSE, error = error))
    })
    writeLines(answer, answers)
    flush(answers)
  }
  invisible(NULL)
}

main()
