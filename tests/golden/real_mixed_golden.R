# Golden values for tests/test_real_datasets.py: lme4 on the real-data fixtures.
#
#   cd tests/golden && Rscript real_mixed_golden.R > real_mixed_golden.Rout 2>&1
#
# Reads the shaped study folders under tests/fixtures/real/ (written by make_real.py) and
# rebuilds exactly the rows and the time variable the pipeline gives a custom model
# (pipeline.trajectories.models.long_scores and _fit_custom):
#   * one row per session that was attended and has a value of the outcome column;
#   * weeks = (session_date - start_date) in days / 7;
#   * rows sorted by patient and session number; is_baseline = a patient's first such row;
#   * baseline_bdi2 = the score at session 0 (every Beat the Blues patient has one);
#   * exclude_baseline: drop the baseline rows and session 0;
#   * text columns are factors with R's alphabetical reference level.
# Models that lme4 refuses are recorded with lme4's error message instead of estimates;
# lme4's warnings and messages (e.g. "boundary (singular) fit") are kept in lme4_messages.
# Writes real_mixed_golden.json. lme4's default checks, bobyqa as in mixed_golden.R.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

fixtures <- file.path("..", "fixtures", "real")

long_data <- function(study, outcome, exclude_baseline = FALSE) {
  patients <- read.csv(file.path(fixtures, study, "patients.csv"), na.strings = "",
                       stringsAsFactors = FALSE)
  sessions <- read.csv(file.path(fixtures, study, "sessions.csv"), na.strings = "",
                       stringsAsFactors = FALSE)
  scored <- sessions[sessions$attendance == "attended" & !is.na(sessions[[outcome]]), ]
  long <- merge(scored, patients, by = "patient_id")
  long <- long[order(long$patient_id, long$session_number), ]
  long$weeks <- as.numeric(as.Date(long$session_date) - as.Date(long$start_date)) / 7
  long$is_baseline <- !duplicated(long$patient_id)
  if ("bdi2" %in% names(sessions)) {
    base <- sessions[sessions$session_number == 0 & !is.na(sessions$bdi2), ]
    long$baseline_bdi2 <- base$bdi2[match(long$patient_id, base$patient_id)]
  }
  if (exclude_baseline) long <- long[!long$is_baseline & long$session_number > 0, ]
  for (column in names(long)) {
    if (is.character(long[[column]]) && !column %in% c("session_date", "start_date",
                                                        "referral_date", "end_date")) {
      long[[column]] <- factor(long[[column]])
    }
  }
  long
}

summarise <- function(fit, call) {
  vc <- as.data.frame(VarCorr(fit))
  list(call = call,
       reml = isREML(fit),
       fixef = as.list(fixef(fit)),
       se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
       varcorr = data.frame(grp = vc$grp, var1 = ifelse(is.na(vc$var1), "", vc$var1),
                            var2 = ifelse(is.na(vc$var2), "", vc$var2), vcov = vc$vcov,
                            sdcor = vc$sdcor),
       sigma = sigma(fit),
       loglik = as.numeric(logLik(fit)),
       aic = AIC(fit), bic = BIC(fit),
       singular = isSingular(fit),
       nobs = nobs(fit),
       ngroups = as.list(ngrps(fit)))
}

ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
out <- list(versions = list(R = R.version.string,
                            lme4 = as.character(packageVersion("lme4"))))

models <- list(
  list(name = "btheb_intercept", study = "beat_the_blues", outcome = "bdi2",
       formula = "bdi2 ~ weeks * arm + (1 | patient_id)", exclude = FALSE, reml = TRUE),
  list(name = "btheb_slope", study = "beat_the_blues", outcome = "bdi2",
       formula = "bdi2 ~ weeks * arm + (1 + weeks | patient_id)", exclude = FALSE,
       reml = TRUE),
  list(name = "btheb_hsaur", study = "beat_the_blues", outcome = "bdi2",
       formula = "bdi2 ~ baseline_bdi2 + weeks + arm + drug + length + (1 | patient_id)",
       exclude = TRUE, reml = FALSE),
  list(name = "anorexia_intercept", study = "anorexia", outcome = "weight_lb",
       formula = "weight_lb ~ weeks * arm + (1 | patient_id)", exclude = FALSE, reml = TRUE),
  list(name = "anorexia_slope", study = "anorexia", outcome = "weight_lb",
       formula = "weight_lb ~ weeks * arm + (1 + weeks | patient_id)", exclude = FALSE,
       reml = TRUE),
  list(name = "anorexia_ancova", study = "anorexia", outcome = "weight_lb",
       formula = "weight_lb ~ prewt_lb + arm + (1 | patient_id)", exclude = TRUE,
       reml = TRUE),
  list(name = "jobs_intercept", study = "jobs_ii", outcome = "hscl_depression",
       formula = "hscl_depression ~ weeks * arm + econ_hard + sex + age + (1 | patient_id)",
       exclude = FALSE, reml = TRUE),
  list(name = "fdd_parent_intercept", study = "fireworks_ptsd", outcome = "ptsd_ri_parent",
       formula = "ptsd_ri_parent ~ weeks * arm + (1 | patient_id)", exclude = FALSE,
       reml = TRUE),
  list(name = "fdd_parent_slope", study = "fireworks_ptsd", outcome = "ptsd_ri_parent",
       formula = "ptsd_ri_parent ~ weeks * arm + (1 + weeks | patient_id)", exclude = FALSE,
       reml = TRUE),
  list(name = "fdd_child_ml", study = "fireworks_ptsd", outcome = "ptsd_ri_child",
       formula = "ptsd_ri_child ~ weeks * arm + ethnicity + (1 | patient_id)",
       exclude = FALSE, reml = FALSE)
)

for (m in models) {
  data <- long_data(m$study, m$outcome, m$exclude)
  call <- sprintf("lmer(%s, %s%s, REML = %s)", m$formula, m$study,
                  if (m$exclude) " (baseline rows excluded)" else "", m$reml)
  notes <- character()
  result <- tryCatch(
    withCallingHandlers(
      summarise(lmer(as.formula(m$formula), data, REML = m$reml, control = ctrl), call),
      warning = function(w) {
        notes <<- c(notes, conditionMessage(w)); invokeRestart("muffleWarning")
      },
      message = function(msg) {
        notes <<- c(notes, trimws(conditionMessage(msg))); invokeRestart("muffleMessage")
      }),
    error = function(e) list(call = call, nobs = nrow(data), error = conditionMessage(e)))
  result$lme4_messages <- I(notes)
  result$reml <- m$reml
  result$study <- m$study
  result$formula <- m$formula
  result$exclude_baseline <- m$exclude
  out[[m$name]] <- result
}

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, dataframe = "rows"),
           "real_mixed_golden.json")
for (name in names(out)[-1]) {
  cat("\n====", name, ":", out[[name]]$call, "\n")
  if (!is.null(out[[name]]$error)) {
    cat("lme4 refuses:", out[[name]]$error, "\n")
    next
  }
  print(out[[name]][c("fixef", "se", "sigma", "loglik", "singular", "nobs", "lme4_messages")])
  print(out[[name]]$varcorr)
}
sessionInfo()
