# Golden values for tests/test_engines.py and tests/test_trajectories.py (mixed models).
#
#   cd tests/golden && Rscript mixed_golden.R > mixed_golden.Rout 2>&1
#
# Writes mixed_sleepstudy.csv and mixed_pastes.csv (lme4's own copies of the data sets),
# reads mixed_demo_growth.csv (written by mixed_make_inputs.py) and writes
# mixed_golden.json. lme4's default optimiser, tight tolerances where they matter.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

write.csv(sleepstudy, "mixed_sleepstudy.csv", row.names = FALSE)
write.csv(Pastes, "mixed_pastes.csv", row.names = FALSE)

summarise <- function(fit, call) {
  vc <- as.data.frame(VarCorr(fit))
  re <- ranef(fit)
  list(call = call,
       reml = isREML(fit),
       fixef = as.list(fixef(fit)),
       se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
       vcov = unname(as.matrix(vcov(fit))),
       varcorr = data.frame(grp = vc$grp, var1 = ifelse(is.na(vc$var1), "", vc$var1),
                            var2 = ifelse(is.na(vc$var2), "", vc$var2), vcov = vc$vcov,
                            sdcor = vc$sdcor),
       sigma = sigma(fit),
       loglik = as.numeric(logLik(fit)),
       aic = AIC(fit), bic = BIC(fit),
       singular = isSingular(fit),
       nobs = nobs(fit),
       ranef_first = lapply(re, function(r) as.list(r[1, , drop = FALSE])),
       ranef_names = lapply(re, function(r) rownames(r)[1]),
       fitted_first = unname(head(fitted(fit), 10)))
}

ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
out <- list(versions = list(R = R.version.string,
                            lme4 = as.character(packageVersion("lme4"))))

f <- "Reaction ~ Days + (Days | Subject)"
out$sleepstudy_reml <- summarise(lmer(as.formula(f), sleepstudy, control = ctrl),
                                 paste0("lmer(", f, ", sleepstudy)"))
out$sleepstudy_ml <- summarise(lmer(as.formula(f), sleepstudy, REML = FALSE, control = ctrl),
                               paste0("lmer(", f, ", sleepstudy, REML = FALSE)"))
f <- "Reaction ~ Days + (Days || Subject)"
out$sleepstudy_uncorrelated <- summarise(lmer(as.formula(f), sleepstudy, control = ctrl),
                                         paste0("lmer(", f, ", sleepstudy)"))
f <- "strength ~ 1 + (1 | batch/cask)"
out$pastes_nested <- summarise(lmer(as.formula(f), Pastes, control = ctrl),
                               paste0("lmer(", f, ", Pastes)"))

demo <- read.csv("mixed_demo_growth.csv", na.strings = "")
demo$condition <- factor(demo$condition,
  levels = c("major_depression", "dysthymia", "anxiety", "eating_disorder", "bipolar",
             "adjustment", "other"))
demo$format <- factor(demo$format, levels = c("individual", "group"))
demo$group_key <- ifelse(is.na(demo$group_id), "(none)", demo$group_id)
f <- paste("score ~ weeks * (condition + format) + age_centred + sex_male",
           "+ (1 + weeks | patient_id) + (0 + is_group | group_key)",
           "+ (1 | therapist_id) + (0 + weeks | therapist_id)")
out$demo_growth <- summarise(lmer(as.formula(f), demo, control = ctrl),
                             paste0("lmer(", f, ", mixed_demo_growth.csv)"))
f <- "score ~ weeks * (condition + format) + age_centred + sex_male + (1 + weeks | patient_id)"
out$demo_patient_only <- summarise(lmer(as.formula(f), demo, control = ctrl),
                                   paste0("lmer(", f, ", mixed_demo_growth.csv)"))

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, dataframe = "rows"),
           "mixed_golden.json")
for (name in names(out)[-1]) {
  cat("\n====", out[[name]]$call, "\n")
  print(out[[name]][c("fixef", "sigma", "loglik", "aic", "bic", "singular")])
  print(out[[name]]$varcorr)
}
sessionInfo()
