"""Admin blueprint: login (password from the environment, stored hashed), per-study progress,
open/close a study, download its export.

    /admin/login          password form (rate-limited per client address, see create_app)
    /admin/               all studies with progress
    /admin/study/<name>   done/needed per class and model, raters, answers per hour, rater link
    POST /admin/study/<name>/status   open or close
    /admin/study/<name>/export.csv    the responses export (columns of study_app.export)
"""

from __future__ import annotations

from functools import wraps

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from study_app import checks, codes, export, progress
from study_app.security import check_admin_password
from study_app.web import engine

bp = Blueprint("admin", __name__, url_prefix="/admin")


def admin_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_app.config.get("ADMIN_PASSWORD_HASH"):
            abort(
                404,
                "the admin pages are off: set HVQEVAL_ADMIN_PASSWORD_HASH or HVQEVAL_ADMIN_PASSWORD",
            )
        if not session.get("admin"):
            return redirect(url_for("admin.login"))
        return view(*args, **kwargs)

    return wrapped


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not current_app.config.get("ADMIN_PASSWORD_HASH"):
        abort(
            404,
            "the admin pages are off: set HVQEVAL_ADMIN_PASSWORD_HASH or HVQEVAL_ADMIN_PASSWORD",
        )
    error = None
    if request.method == "POST":
        if check_admin_password(
            current_app.config["ADMIN_PASSWORD_HASH"], str(request.form.get("password", ""))
        ):
            session.clear()
            session["admin"] = True
            return redirect(url_for("admin.index"))
        error = "wrong password"
    return render_template("admin_login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.pop("admin", None)
    return redirect(url_for("admin.login"))


@bp.get("/")
@admin_required
def index():
    studies = [progress.study_progress(engine(), n) for n in progress.study_names(engine())]
    return render_template("admin_index.html", studies=studies)


def _progress_or_404(name: str):
    found = progress.study_progress(engine(), name)
    if found is None:
        abort(404, f"no study named {name}")
    return found


@bp.get("/study/<name>")
@admin_required
def study(name: str):
    found = _progress_or_404(name)
    link = url_for("rater.entry", public_id=found.public_id, _external=True)
    raters = codes.rater_codes(engine(), name)
    passed = checks.participant_pass_rates(engine(), name)  # catch items: (passed, given)
    return render_template("admin_study.html", study=found, link=link, raters=raters, passed=passed)


@bp.post("/study/<name>/status")
@admin_required
def status(name: str):
    wanted = request.form.get("status")
    if wanted not in ("open", "closed"):
        abort(400, "status must be open or closed")
    if not progress.set_status(engine(), name, wanted):
        abort(404, f"no study named {name}")
    return redirect(url_for("admin.study", name=name))


@bp.get("/study/<name>/export.csv")
@admin_required
def download(name: str):
    _progress_or_404(name)
    rows = export.export_rows(engine(), name)
    return Response(
        export.rows_to_csv(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-responses.csv"'},
    )
