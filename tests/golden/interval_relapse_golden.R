# Golden values for tests/test_relapse_interval.py (interval-censored relapse).
#
#   cd tests/golden && Rscript interval_relapse_golden.R > interval_relapse_golden.Rout
#
# Reads interval_relapse_{btb,smoking,demo}.csv (written by
# interval_relapse_make_inputs.py: the intervals exactly as the pipeline builds them) and
# writes interval_relapse_golden.json. R 4.2.2, survival 3.5-3.
#
# Two references for the Turnbull NPMLE of relapse-free survival:
# - survfit(Surv(left, right, type = "interval2") ~ 1): R's own estimator. Its EM
#   (survival:::survfitTurnbull) stops when no value of S changes by more than 5e-5 in an
#   iteration, which on slowly converging data is far from the maximum (the change per
#   iteration is much smaller than the distance still to go);
# - em_npmle() below: the same self-consistency (EM) iteration (Turnbull 1976) run to a
#   change of the log-likelihood below 1e-13 per iteration, the converged NPMLE.
# Both are read at every finite end of an observed interval (and 0), where the NPMLE is
# unique. Intervals are (left, right] (interval2), exact when left == right, right-censored
# when right is NA (the CSVs write inf).
library(survival)
library(jsonlite)

read_intervals <- function(path) {
  d <- read.csv(path, na.strings = "")
  d$right <- ifelse(is.finite(d$right_weeks), d$right_weeks, NA)
  d$left <- d$left_weeks
  d
}

# Hand-built cohort of tests/test_relapse_cohort.py, intervals derived by hand in
# tests/test_relapse_interval.py: P01 (13, 26], P02 (26, inf), P03 (0, 8] (exact 8 when the
# clinician dates relapses), P04 (13, inf) (died at 21), P05 (13, inf) (withdrew), P06 (13,
# inf), P10 (0, inf) (other treatment at 4), P11 (26, inf), P12 (0, 13].
hand <- data.frame(
  patient_id = c("P01", "P02", "P03", "P04", "P05", "P06", "P10", "P11", "P12"),
  left = c(13, 26, 0, 13, 13, 13, 0, 26, 0),
  right = c(26, NA, 8, NA, NA, NA, NA, NA, 13),
  maintenance = c(TRUE, FALSE, FALSE, TRUE, FALSE, TRUE, FALSE, FALSE, TRUE))
hand_exact <- hand
hand_exact$left[hand_exact$patient_id == "P03"] <- 8

grid_of <- function(d) sort(unique(c(0, d$left, d$right[!is.na(d$right)])))

# Turnbull NPMLE by the self-consistency iteration, to convergence. Candidate support: the
# point {e} of every exact time e and every cell (a, b] between consecutive distinct ends
# whose lower end is the left end of an interval-censored or right-censored observation and
# whose upper end is the right end of an interval-censored one (or Inf).
em_npmle <- function(d, tol = 1e-13, maxit = 2e6) {
  exact <- !is.na(d$right) & d$left == d$right
  right <- ifelse(is.na(d$right), Inf, d$right)
  ends <- sort(unique(c(d$left, right)))
  lo <- c(); hi <- c(); point <- c()
  for (e in unique(d$left[exact])) { lo <- c(lo, e); hi <- c(hi, e); point <- c(point, TRUE) }
  for (k in seq_len(length(ends) - 1)) {
    a <- ends[k]; b <- ends[k + 1]
    if (any(d$left[!exact] == a) && any(right[!exact] == b)) {
      lo <- c(lo, a); hi <- c(hi, b); point <- c(point, FALSE)
    }
  }
  # alpha[i, j]: support j inside observation i
  alpha <- sapply(seq_along(lo), function(j) {
    ifelse(exact, point[j] & lo[j] == d$left,
           (point[j] & lo[j] > d$left & hi[j] <= right) |
           (!point[j] & lo[j] >= d$left & hi[j] <= right))
  })
  alpha <- matrix(as.numeric(alpha), nrow = nrow(d))
  p <- rep(1 / length(lo), length(lo))
  loglik <- -Inf
  for (it in seq_len(maxit)) {
    denom <- drop(alpha %*% p)
    p <- p * drop(crossprod(alpha, 1 / denom)) / nrow(d)
    new <- sum(log(drop(alpha %*% p)))
    if (new - loglik < tol) break
    loglik <- new
  }
  list(lo = lo, hi = hi, point = point, p = p, iterations = it, loglik = new)
}

# S(t) = P(T > t) of the EM solution: mass of supports entirely above t.
em_survival <- function(fit, times) {
  sapply(times, function(t) sum(fit$p[(fit$point & fit$lo > t) | (!fit$point & fit$lo >= t)]))
}

loglik_of <- function(d, surv_at) {
  # log-likelihood of a survival function given at every end of the data
  s <- function(t) if (is.na(t)) 0 else surv_at(t)
  exact <- !is.na(d$right) & d$left == d$right
  sum(mapply(function(l, r, x) {
    if (x) log(surv_at(l - 1e-9) - surv_at(l)) else log(surv_at(l) - s(r))
  }, d$left, d$right, exact))
}

turnbull <- function(d) {
  times <- grid_of(d)
  fit <- survfit(Surv(left, right, type = "interval2") ~ 1, data = d)
  step <- stepfun(fit$time, c(1, fit$surv))
  em <- em_npmle(d)
  em_step <- function(t) em_survival(em, t)
  list(n = nrow(d), events = sum(!is.na(d$right)), time = times,
       survfit = step(times), em = em_step(times), em_iterations = em$iterations,
       loglik_survfit = loglik_of(d, step), loglik_em = loglik_of(d, em_step))
}

by_maintenance <- function(d) {
  groups <- split(d, as.character(d$maintenance))
  names(groups) <- c("False" = "False", "True" = "True",
                     "FALSE" = "False", "TRUE" = "True")[names(groups)]
  lapply(groups, turnbull)
}

btb <- read_intervals("interval_relapse_btb.csv")
demo <- read_intervals("interval_relapse_demo.csv")
smoking <- read_intervals("interval_relapse_smoking.csv")  # exact (clinician-dated) relapses

aft <- function(d) {
  terms <- grep("^x_", names(d), value = TRUE)
  d <- d[d$in_model %in% c(TRUE, "True"), ]
  # survreg needs positive times: an interval (0, R] is left-censored at R (the same
  # likelihood, 1 - S(R)); (0, inf) carries no information (NA, dropped by survreg)
  d$left[d$left == 0 & !(d$right %in% 0)] <- NA
  # an exact relapse at time 0 has no Weibull density: the pipeline takes it as (0, 1 day]
  zero <- d$right %in% 0
  d$left[zero] <- NA
  d$right[zero] <- 1 / 7
  form <- as.formula(paste("Surv(left, right, type = \"interval2\") ~",
                           paste(terms, collapse = " + ")))
  fit <- survreg(form, data = d, dist = "weibull")
  v <- vcov(fit)
  list(call = deparse(form), terms = names(coef(fit)), coef = unname(coef(fit)),
       se = unname(sqrt(diag(v))[seq_along(coef(fit))]),
       log_scale = log(fit$scale), log_scale_se = unname(sqrt(v["Log(scale)", "Log(scale)"])),
       loglik = fit$loglik[2], n = nrow(d), events = sum(!is.na(d$right)))
}

golden <- list(
  r_version = R.version.string,
  survival_version = as.character(packageVersion("survival")),
  hand = turnbull(hand),
  hand_maintenance = by_maintenance(hand),
  hand_exact = turnbull(hand_exact),
  btb = turnbull(btb),
  demo = turnbull(demo),
  demo_maintenance = by_maintenance(demo),
  demo_aft = aft(demo),
  smoking = turnbull(smoking),
  smoking_km = list(time = grid_of(smoking), surv = stepfun(
    survfit(Surv(left, !is.na(right)) ~ 1, data = smoking)$time,
    c(1, survfit(Surv(left, !is.na(right)) ~ 1, data = smoking)$surv))(grid_of(smoking))),
  smoking_aft = aft(smoking))
str(golden)
write_json(golden, "interval_relapse_golden.json", digits = NA, auto_unbox = TRUE,
           pretty = TRUE)
