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

# The most a request's tracked metrics may take, encoded, on an answer line (docs/workers.md).
MAX_METRICS_BYTES <- 65536L

# JSON text with every character beyond ASCII written as a \uXXXX escape (a UTF-16 pair beyond
# the BMP), as Python's ensure_ascii does: metrics go on in an HTTP header. Outside strings JSON
# is ASCII already, so the text keeps its meaning.
ascii_json <- function(text) {
  codes <- utf8ToInt(enc2utf8(text))
  wide <- codes > 127L
  if (!any(wide)) return(text)
  escape <- function(code) {
    if (code < 65536L) return(sprintf("\\u%04x", code))
    code <- code - 65536L
    sprintf("\\u%04x\\u%04x", 55296L + code %/% 1024L, 56320L + code %% 1024L)
  }
  chars <- intToUtf8(codes, multiple = TRUE)
  chars[wide] <- vapply(codes[wide], escape, "")
  paste(chars, collapse = "")
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

  # The metrics SDK the model's code sees (R has no decorator): track_metric(key, value) and
  # track_metrics(list) collect into the request being answered; `tracked` is NULL between
  # requests, else a named list of each metric's JSON text.
  current <- new.env()
  current$tracked <- NULL
  sdk <- new.env(parent = globalenv())
  sdk$track_metric <- function(key, value) {
    if (!is.character(key) || length(key) != 1L || is.na(key) || !nzchar(key)) {
      stop("track_metric's key is one non-empty string", call. = FALSE)
    }
    text <- tryCatch(encode(value), error = function(condition) {
      stop(sprintf("metric '%s' cannot be tracked, it is not JSON: %s", key,
                   conditionMessage(condition)), call. = FALSE)
    })
    if (is.null(current$tracked)) {
      writeLines(sprintf("modelship: track_metric('%s') outside a request is ignored", key), stderr())
    } else {
      current$tracked[[key]] <- text
    }
    invisible(NULL)
  }
  sdk$track_metrics <- function(metrics) {
    if (!is.list(metrics) || is.null(names(metrics)) || any(!nzchar(names(metrics)))) {
      stop("track_metrics takes a named list of metrics", call. = FALSE)
    }
    for (key in names(metrics)) sdk$track_metric(key, metrics[[key]])
    invisible(NULL)
  }
  # `{"id":N,"ok":true,"metrics":{...},"response":...}`: metrics when any were tracked and they
  # fit MAX_METRICS_BYTES; the response is encoded as it always is.
  answer_of <- function(id, uuid, response, tracked) {
    body <- encode(list(response = response))
    head <- encode(list(id = id, ok = TRUE))
    head <- substr(head, 1L, nchar(head) - 1L)
    if (length(tracked)) {
      keys <- vapply(names(tracked), function(key) encode(key), "")
      metrics <- ascii_json(paste0("{", paste0(keys, ":", unlist(tracked), collapse = ","), "}"))
      size <- nchar(metrics, type = "bytes")
      if (size > MAX_METRICS_BYTES) {
        what <- if (is.character(uuid)) paste("prediction", uuid) else paste("request", id)
        writeLines(sprintf(paste0("modelship: dropped the metrics of %s: %d bytes encoded, more ",
                                  "than the %d (64 KiB) an answer carries; the answer goes ",
                                  "without them"), what, size, MAX_METRICS_BYTES), stderr())
      } else {
        head <- paste0(head, ',"metrics":', metrics)
      }
    }
    paste0(head, ",", substring(body, 2L))
  }

  model <- new.env(parent = sdk)
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
    current$tracked <- list()
    answer <- tryCatch({
      response <- loaded(message$request)
      answer_of(message$id, message$uuid, response, current$tracked)
    }, error = function(condition) {
      # The error goes to the replica's log too (CDSW's Monitoring pane shows it); the caller
      # gets its class and message only.
      error <- error_of(condition)
      writeLines(sprintf("Error (%s): %s", error$type, error$message), stderr())
      encode(list(id = message$id, ok = FALSE, error = error))
    })
    current$tracked <- NULL
    writeLines(answer, answers)
    flush(answers)
  }
  invisible(NULL)
}

main()
