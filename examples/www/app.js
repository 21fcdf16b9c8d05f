// Served as text/javascript: with `X-Content-Type-Options: nosniff` a browser runs it only then.
document.getElementById("script-status").textContent = "The script ran.";
