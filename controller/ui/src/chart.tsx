// A time-series chart (uPlot): x in seconds since the epoch, one line per series. It follows its
// box's width, so it fits a phone as well as a desktop.
import "uplot/dist/uPlot.min.css";
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

export interface ChartProps {
  title: string;
  /** Unit for the y axis ("calls/s", "ms"). */
  unit: string;
  series: { label: string; color: string }[];
  /** [times (s), ...one array per series]; null for a gap. */
  data: [number[], ...(number | null)[][]];
}

export function Chart({ title, unit, series, data }: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  // Made once per set of series; new data only updates it.
  const shape = series.map((line) => line.label).join("|");
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const made = new uPlot(
      {
        title,
        width: Math.max(element.clientWidth, 240),
        height: 200,
        scales: { x: { time: true } },
        axes: [{}, { label: unit, size: 56 }],
        series: [
          {},
          ...series.map((line) => ({
            label: line.label,
            stroke: line.color,
            width: 2,
            spanGaps: false,
          })),
        ],
      },
      data as uPlot.AlignedData,
      element,
    );
    plot.current = made;
    const resize = new ResizeObserver(() =>
      made.setSize({ width: Math.max(element.clientWidth, 240), height: 200 }),
    );
    resize.observe(element);
    return () => {
      resize.disconnect();
      made.destroy();
      plot.current = undefined;
    };
    // The data is set by the effect below; the chart is made again only for other series.
  }, [shape, title, unit]);
  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);
  return <div class="chart" ref={box} role="img" aria-label={`${title} (${unit})`} />;
}
