// The operations page's charts (Chart.js, vendored in static/vendor/chartjs). Every chart
// shows this period next to the previous one; the data comes from the json_script block.
(function () {
  const node = document.getElementById("operations-data");
  if (!node || !window.Chart) return;
  const d = JSON.parse(node.textContent);
  const BLUE = "#2f5bd3", GREY = "#a8b0bf", PALETTE = ["#2f5bd3", "#d9822b", "#2e9e6b", "#c23b3b", "#7a4fd0", "#1f9bb4", "#b58a00", "#6b7280"];
  const base = { maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } } };

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (canvas) new window.Chart(canvas, config);
  }
  function previousLine(values) {
    return { type: "line", label: "Previous period", data: values, borderColor: GREY, backgroundColor: GREY,
             borderDash: [4, 4], pointRadius: 2, spanGaps: true };
  }

  draw("chart-success", { type: "line", data: { labels: d.labels, datasets: [
      { label: "This period", data: d.success.current, borderColor: BLUE, backgroundColor: BLUE, spanGaps: true },
      previousLine(d.success.previous) ] },
    options: { ...base, scales: { y: { min: 0, max: 100, ticks: { callback: (v) => v + "%" } } } } });

  draw("chart-outcomes", { type: "bar", data: { labels: d.outcomes.labels, datasets: [
      { label: "This period", data: d.outcomes.current, backgroundColor: BLUE },
      { label: "Previous period", data: d.outcomes.previous, backgroundColor: GREY } ] },
    options: { ...base, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });

  draw("chart-cost", { type: "bar", data: { labels: d.labels, datasets: [
      { label: "This period (USD)", data: d.cost.current, backgroundColor: BLUE }, previousLine(d.cost.previous) ] },
    options: { ...base, scales: { y: { beginAtZero: true, ticks: { callback: (v) => "$" + v } } } } });

  function latency(id, series) {
    if (!series || !series.labels.length) return;
    draw(id, { type: "bar", data: { labels: series.labels, datasets: [
        { label: "p50", data: series.p50, backgroundColor: "#8fa8ec" },
        { label: "p95", data: series.p95, backgroundColor: BLUE },
        { label: "previous p50", data: series.prev_p50, backgroundColor: "#d5d9e1" },
        { label: "previous p95", data: series.prev_p95, backgroundColor: GREY } ] },
      options: { ...base, scales: { y: { beginAtZero: true, title: { display: true, text: "seconds" } } } } });
  }
  latency("chart-lat-runs", d.latency.runs);
  latency("chart-lat-model", d.latency.model);
  latency("chart-lat-ttft", d.latency.ttft);
  latency("chart-lat-tools", d.latency.tools);
  latency("chart-lat-steps", d.latency.steps);

  function stacked(id, block) {
    const names = Object.keys(block.series);
    const datasets = names.map((name, i) => ({ type: "bar", label: name, data: block.series[name],
                                               backgroundColor: PALETTE[i % PALETTE.length], stack: "now" }));
    datasets.push(previousLine(block.previous));
    draw(id, { type: "bar", data: { labels: d.labels, datasets },
      options: { ...base, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } } });
  }
  stacked("chart-retries", d.retries);
  stacked("chart-escalations", d.escalations);
})();
