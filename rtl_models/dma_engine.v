// DMA burst engine: copies `nbytes` bytes from a source memory to a destination memory after a
// programmable latency, at a programmable number of bytes per cycle; the RTL side of
// sim/timing.py's dma_cycles(nbytes, latency, clock_hz, bw) = latency + ceil(nbytes / bpc)
// (0 for an empty copy).
//
// Timing, counted in rising edges after the one that accepts `start` (cycles):
//   nbytes == 0   done at the start edge itself, cycles = 0
//   else          `latency` edges of request latency, then ceil(nbytes / bytes_per_cycle) beats,
//                 each copying min(bytes_per_cycle, bytes left) bytes; the last beat's edge
//                 raises done (a one-cycle pulse) with cycles = latency + beats.
// Byte addresses wrap modulo MEM_BYTES. bytes_per_cycle must be 1..MAX_BPC.
//
// Host ports (initial contents, results): src_we/dst_we write the 8-byte word host_waddr of the
// source or destination memory; host_rdata reads the destination word host_raddr (combinational).
module dma_engine #(
    parameter MEM_BYTES = 1024,            // bytes in each memory, a power of two >= 8
    parameter MAX_BPC = 64,                // widest beat, bytes
    parameter AW = $clog2(MEM_BYTES),
    parameter LW = 16,                     // width of the latency
    parameter PW = $clog2(MAX_BPC) + 1     // width of bytes_per_cycle
) (
    input  wire          clk,
    input  wire          rst,
    // transfer
    input  wire          start,
    input  wire [AW-1:0] src_addr,
    input  wire [AW-1:0] dst_addr,
    input  wire [AW:0]   nbytes,
    input  wire [LW-1:0] latency,
    input  wire [PW-1:0] bytes_per_cycle,
    output reg           busy,
    output reg           done,
    output reg  [31:0]   cycles,
    // host ports
    input  wire            src_we,
    input  wire            dst_we,
    input  wire [AW-4:0]   host_waddr,
    input  wire [63:0]     host_wdata,
    input  wire [AW-4:0]   host_raddr,
    output wire [63:0]     host_rdata
);
    reg [7:0] src_mem [0:MEM_BYTES-1];
    reg [7:0] dst_mem [0:MEM_BYTES-1];

    reg          in_latency;               // busy: 1 = waiting out the latency, 0 = copying
    reg [LW-1:0] wait_left;
    reg [AW:0]   bytes_left;
    reg [AW-1:0] src_p, dst_p;
    reg [PW-1:0] bpc;

    // bytes moved by this beat
    wire [AW:0] beat = (bytes_left < bpc) ? bytes_left : bpc;

    genvar g;
    generate
        for (g = 0; g < 8; g = g + 1) begin : rd_lane
            assign host_rdata[8*g +: 8] = dst_mem[{host_raddr, 3'b000} + g];
        end
    endgenerate

    integer i;
    always @(posedge clk) begin
        if (src_we)
            for (i = 0; i < 8; i = i + 1)
                src_mem[{host_waddr, 3'b000} + i] <= host_wdata[8*i +: 8];
        if (dst_we)
            for (i = 0; i < 8; i = i + 1)
                dst_mem[{host_waddr, 3'b000} + i] <= host_wdata[8*i +: 8];
        if (rst) begin
            busy <= 1'b0;
            done <= 1'b0;
            cycles <= 32'd0;
            in_latency <= 1'b0;
        end else if (!busy) begin
            done <= start && nbytes == 0;
            if (start) begin
                cycles <= 32'd0;
                busy <= nbytes != 0;
                in_latency <= latency != 0;
                wait_left <= latency;
                bytes_left <= nbytes;
                src_p <= src_addr;
                dst_p <= dst_addr;
                bpc <= bytes_per_cycle;
            end
        end else begin
            cycles <= cycles + 1;
            if (in_latency) begin
                wait_left <= wait_left - 1'b1;
                in_latency <= wait_left != 1;
            end else begin
                for (i = 0; i < MAX_BPC; i = i + 1)
                    if (i < beat)
                        dst_mem[(dst_p + i) % MEM_BYTES] <= src_mem[(src_p + i) % MEM_BYTES];
                src_p <= src_p + beat;
                dst_p <= dst_p + beat;
                bytes_left <= bytes_left - beat;
                if (bytes_left == beat) begin
                    busy <= 1'b0;
                    done <= 1'b1;
                end
            end
        end
    end
endmodule
