# Golden values for tests/test_relapse.py and tests/test_relapse_cohort.py.
#
#   cd tests/golden && Rscript relapse_golden.R > relapse_golden.Rout
#
# Reads relapse_lung.csv, relapse_rossi.csv and relapse_demo_cohort.csv (written by
# relapse_make_inputs.py) and writes relapse_golden.json. R 4.2.2, survival 3.5-3.
library(survival)
library(jsonlite)

lung <- read.csv("relapse_lung.csv")          # status 0/1 (lifelines coding)
rossi <- read.csv("relapse_rossi.csv")
demo <- read.csv("relapse_demo_cohort.csv", na.strings = "")
demo$time_weeks <- demo$time_days / 7
demo$format <- factor(demo$format, levels = c("individual", "group"))
demo$maintenance <- factor(as.character(demo$maintenance), levels = c("False", "True"))
# Hand-built cohort of tests/test_relapse_cohort.py (event times derived by hand there).
hand <- data.frame(
  patient_id = c("P01", "P02", "P03", "P04", "P05", "P06", "P10", "P11", "P12"),
  time_weeks = c(26, 26, 8, 21, 13, 13, 4, 26, 13),
  event = c(1, 0, 1, 2, 0, 0, 2, 0, 1))

km_summary <- function(fit, times) {
  s <- summary(fit, times = times, extend = TRUE)
  tab <- summary(fit)$table
  if (is.null(dim(tab))) tab <- t(as.matrix(tab))
  list(strata = if (is.null(s$strata)) rep("all", length(s$time)) else as.character(s$strata),
       time = s$time, surv = s$surv, lower = s$lower, upper = s$upper,
       median = unname(tab[, "median"]), median_lower = unname(tab[, "0.95LCL"]),
       median_upper = unname(tab[, "0.95UCL"]), n = unname(tab[, "records"]),
       events = unname(tab[, "events"]))
}

cox_summary <- function(fit) {
  s <- summary(fit)
  se_col <- if ("robust se" %in% colnames(s$coefficients)) "robust se" else "se(coef)"
  list(term = rownames(s$coefficients), coef = unname(s$coefficients[, "coef"]),
       se = unname(s$coefficients[, se_col]), hr = unname(s$conf.int[, "exp(coef)"]),
       lower = unname(s$conf.int[, "lower .95"]), upper = unname(s$conf.int[, "upper .95"]),
       p = unname(s$coefficients[, "Pr(>|z|)"]), n = fit$n, nevent = fit$nevent)
}

# survival < 3.0 cox.zph(fit, transform = "rank"): per term
# T = (sum_k g_k r_k)^2 / (d var(beta) sum_k g_k^2), r = Schoenfeld %*% var * d,
# g = rank(event times) - mean (ties averaged). This is what lifelines implements.
zph_rank_old <- function(fit) {
  sresid <- as.matrix(residuals(fit, type = "schoenfeld"))
  d <- nrow(sresid)
  times <- sort(fit$y[fit$y[, 2] == 1, 1])
  g <- rank(times) - mean(rank(times))
  vv <- if (is.null(fit$naive.var)) fit$var else fit$naive.var
  r2 <- sresid %*% vv * d
  stat <- as.vector((g %*% r2)^2 / (diag(vv) * d * sum(g^2)))
  list(term = names(coef(fit)), chisq = stat, p = pchisq(stat, 1, lower.tail = FALSE))
}

zph_rank_new <- function(fit) {
  z <- cox.zph(fit, transform = "rank", terms = FALSE, global = FALSE)
  list(term = rownames(z$table), chisq = unname(z$table[, "chisq"]),
       p = unname(z$table[, "p"]))
}

logrank <- function(formula, data) {
  s <- survdiff(formula, data = data)
  df <- length(s$n) - 1
  list(chisq = s$chisq, df = df, p = pchisq(s$chisq, df, lower.tail = FALSE))
}

rmst <- function(fit, tau) {
  tab <- summary(fit, rmean = tau)$table
  if (is.null(dim(tab))) tab <- t(as.matrix(tab))
  list(rmean = unname(tab[, "rmean"]), se = unname(tab[, "se(rmean)"]))
}

cif <- function(data) {
  fit <- survfit(Surv(time_weeks, factor(event, 0:2)) ~ 1, data = data)
  keep <- fit$n.event[, 2] > 0           # times with a relapse (state "1")
  list(time = fit$time[keep], cif = fit$pstate[keep, 2], std_err = fit$std.err[keep, 2],
       lower = fit$lower[keep, 2], upper = fit$upper[keep, 2])
}

golden <- list(
  r_version = R.version.string,
  survival_version = as.character(packageVersion("survival")),
  lung_km = km_summary(survfit(Surv(time, status) ~ 1, data = lung, conf.type = "log-log"),
                       c(180, 365)),
  lung_km_sex = km_summary(survfit(Surv(time, status) ~ sex, data = lung,
                                   conf.type = "log-log"), c(180, 365)),
  lung_logrank_sex = logrank(Surv(time, status) ~ sex, lung),
  lung_logrank_ecog = logrank(Surv(time, status) ~ ph.ecog, lung),
  lung_cox = cox_summary(coxph(Surv(time, status) ~ age + sex + ph.ecog, data = lung)),
  lung_cox_cluster = cox_summary(coxph(Surv(time, status) ~ age + sex + ph.ecog + cluster(inst),
                                       data = lung)),
  lung_zph_old = zph_rank_old(coxph(Surv(time, status) ~ age + sex + ph.ecog, data = lung)),
  lung_rmst_sex = rmst(survfit(Surv(time, status) ~ sex, data = lung), 365),
  rossi_cox = cox_summary(coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro +
                                  prio, data = rossi)),
  rossi_zph_old = zph_rank_old(coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar +
                                       paro + prio, data = rossi)),
  rossi_zph_new = zph_rank_new(coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar +
                                       paro + prio, data = rossi)),
  demo_km_format = km_summary(survfit(Surv(time_weeks, event == 1) ~ format, data = demo,
                                      conf.type = "log-log"), c(26, 52)),
  demo_logrank_format = logrank(Surv(time_weeks, event == 1) ~ format, demo),
  demo_logrank_condition = logrank(Surv(time_weeks, event == 1) ~ condition, demo),
  demo_cox_cluster = cox_summary(coxph(Surv(time_weeks, event == 1) ~ format + maintenance +
                                         residual_phq9 + cluster(therapist_id), data = demo)),
  demo_cox_strata_cluster = cox_summary(coxph(Surv(time_weeks, event == 1) ~ format +
                                                residual_phq9 + strata(maintenance) +
                                                cluster(therapist_id), data = demo)),
  demo_rmst_maintenance = rmst(survfit(Surv(time_weeks, event == 1) ~ maintenance,
                                       data = demo), 52),
  demo_cif = cif(demo),
  demo_cif_group = cif(demo[demo$format == "group", ]),
  hand_km = km_summary(survfit(Surv(time_weeks, event == 1) ~ 1, data = hand,
                               conf.type = "log-log"), c(13, 26)),
  hand_cif = cif(hand)
)
write_json(golden, "relapse_golden.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
str(golden)
