# bench/plot.gp: server CPU per message, by scenario and server.
# run.sh calls it in bench/results after a run:
#   gnuplot -e "datafile='cpu_per_msg.dat'; outfile='cpu_per_msg.png'; nservers=7" bench/plot.gp
# cpu_per_msg.dat: a header line "scenario SERVER...", then one line per
# scenario with each server's median CPU ns per message (NaN: not run).
if (!exists("datafile")) datafile = 'cpu_per_msg.dat'
if (!exists("outfile")) outfile = 'cpu_per_msg.png'
if (!exists("nservers")) nservers = 7

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
  set terminal pngcairo size 1400,720 font "sans,11" noenhanced
} else {
  set terminal png size 1400,720 noenhanced
}
set output outfile
set title "Server CPU per message (median over rounds; lower is better)"
set style data histograms
set style histogram clustered gap 1.5
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [1000:*]
set format y "%.0s%c"
set ylabel "server CPU ns per message (log scale)"
set xlabel "scenario (pp = 64-byte pingpong, C connections; stream10 = 16 KiB chunks; connect50 = connect/echo/close; idle10k = per connection)"
set grid ytics mytics
set key outside right top vertical
set xtics nomirror
plot for [i=2:nservers+1] datafile using i:xtic(1) title columnheader(i)
